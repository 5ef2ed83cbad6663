/* png_save.c - see png_save.h. */
#include "png_save.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

int png_save_rgb(const char *path, const uint8_t *rgb, int width, int height, size_t pitch, char *err,
                 size_t err_size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, err_size, "%s: cannot write: %s", path, strerror(errno));
        return 0;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        snprintf(err, err_size, "%s: out of memory", path);
        return 0;
    }
    if (setjmp(png_jmpbuf(png))) { /* libpng reports errors by longjmp */
        png_destroy_write_struct(&png, &info);
        fclose(f);
        snprintf(err, err_size, "%s: libpng failed to write the image", path);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * pitch));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) {
        snprintf(err, err_size, "%s: write failed", path);
        return 0;
    }
    return 1;
}
