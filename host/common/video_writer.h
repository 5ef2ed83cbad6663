/* video_writer.h - writes RGB24 frames to a video file, the container chosen by the file extension.
 *
 *   .y4m                  YUV4MPEG2, 4:2:0 (BT.601, limited range); written by hand, no FFmpeg needed
 *   .rgb                  raw RGB24 frames, rows packed, no header
 *   .mp4 .mkv .mov .avi   libavformat + libavcodec: H.264 (libx264) when the encoder exists, else
 *                         MPEG-4 part 2; yuv420p. Odd frame sizes are padded to even by repeating the
 *                         last column / row (4:2:0 encoders need even sizes).
 *
 * Errors are returned as 0 with a message in `err`; nothing here exits. */
#ifndef WM_RUN_VIDEO_WRITER_H
#define WM_RUN_VIDEO_WRITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct video_writer video_writer;

/* Opens `path` for frames of width x height at `fps`. `encoder` names an FFmpeg encoder to use
 * instead of the default choice (NULL = libx264, else mpeg4). NULL on failure (message in err). */
video_writer *video_writer_open(const char *path, int width, int height, double fps, const char *encoder,
                                char *err, size_t err_size);
/* Appends one frame: `height` rows of `width` RGB24 pixels, rows `pitch` bytes apart. 1 = ok. */
int video_writer_write(video_writer *w, const uint8_t *rgb, size_t pitch, char *err, size_t err_size);
/* Flushes the encoder, finishes the file and frees `w` (also on failure). 1 = ok. */
int video_writer_close(video_writer *w, char *err, size_t err_size);
/* e.g. "H.264 (libx264) 480x320 yuv420p"; valid until close. */
const char *video_writer_describe(const video_writer *w);
/* 1 when this build encodes through FFmpeg (.mp4 and friends). */
int video_writer_have_ffmpeg(void);

#endif
