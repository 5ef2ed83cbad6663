/* png_save.h - writes an RGB24 image as PNG through libpng (Debian's libpng-dev). */
#ifndef WM_PLAY_PNG_SAVE_H
#define WM_PLAY_PNG_SAVE_H

#include <stddef.h>
#include <stdint.h>

/* 1 = ok, else 0 with a message in err. */
int png_save_rgb(const char *path, const uint8_t *rgb, int width, int height, size_t pitch, char *err,
                 size_t err_size);

#endif
