/* font.h - a tiny built-in 5x7 bitmap font (printable ASCII) for the HUD: SDL2 draws no text. */
#ifndef WM_PLAY_FONT_H
#define WM_PLAY_FONT_H

#include <stdint.h>

#define FONT_W       5
#define FONT_H       7
#define FONT_ADVANCE 6 /* glyph + 1 column of spacing */
#define FONT_LINE    9 /* glyph + 2 rows of spacing */

/* Draws `text` into a 32-bit pixel buffer (w x h, `pitch` pixels per row) with its top-left corner at
 * (x, y), clipped to the buffer. '\n' starts a new line; bytes outside printable ASCII draw as '?'.
 * Returns the width in pixels of the longest line. */
int font_draw(uint32_t *pixels, int w, int h, int pitch, int x, int y, const char *text, uint32_t color);
/* Size in pixels the text would take. */
void font_measure(const char *text, int *width, int *height);

#endif
