/* video_writer.c - see video_writer.h. Raw formats (.y4m, .rgb) are written by hand so that wm-run
 * works without FFmpeg; everything else goes through libavformat/libavcodec/libswscale. */
#include "video_writer.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef WM_RUN_HAVE_FFMPEG
#define WM_RUN_HAVE_FFMPEG 0
#endif
#if WM_RUN_HAVE_FFMPEG
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#endif

enum { FMT_Y4M, FMT_RGB, FMT_FFMPEG };

struct video_writer {
    int kind;
    int width, height; /* frame size of the caller */
    int64_t n_frames;
    char desc[160];
    /* raw formats */
    FILE *f;
    uint8_t *yuv; /* y4m: one 4:2:0 frame */
#if WM_RUN_HAVE_FFMPEG
    int enc_width, enc_height; /* padded to even */
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    uint8_t *padded; /* enc_width x enc_height RGB24 when the size is odd */
    int header_written;
#endif
};

static int fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return 0;
}

static const char *extension(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

/* fps as a small rational: 16 -> 16/1, 12.5 -> 25/2, 29.97 -> 2997/100. */
static void fps_rational(double fps, int *num, int *den) {
    int d = 1;
    while (d < 1000 && fabs(fps * d - floor(fps * d + 0.5)) > 1e-6) d *= 10;
    long n = (long)floor(fps * d + 0.5);
    long a = n, b = d;
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    if (a < 1) a = 1;
    *num = (int)(n / a);
    *den = (int)(d / a);
}

/* ---- raw formats ---- */

/* BT.601 limited range, the convention of y4m files and of swscale's default. */
static inline uint8_t clamp_u8(double v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5); }
static inline uint8_t rgb_y(double r, double g, double b) {
    return clamp_u8(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255);
}
static inline uint8_t rgb_u(double r, double g, double b) {
    return clamp_u8(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255);
}
static inline uint8_t rgb_v(double r, double g, double b) {
    return clamp_u8(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255);
}

/* RGB24 -> planar 4:2:0; chroma planes are ceil(w/2) x ceil(h/2), each sample the mean of its
 * 2x2 block (edge pixels repeated for odd sizes). */
static void rgb_to_yuv420(const uint8_t *rgb, size_t pitch, int w, int h, uint8_t *out) {
    const int cw = (w + 1) / 2, ch = (h + 1) / 2;
    uint8_t *Y = out, *U = out + (size_t)w * h, *V = U + (size_t)cw * ch;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = rgb + (size_t)y * pitch;
        for (int x = 0; x < w; x++) Y[(size_t)y * w + x] = rgb_y(row[3 * x], row[3 * x + 1], row[3 * x + 2]);
    }
    for (int cy = 0; cy < ch; cy++) {
        for (int cx = 0; cx < cw; cx++) {
            double r = 0, g = 0, b = 0;
            for (int dy = 0; dy < 2; dy++) {
                const int y = 2 * cy + dy < h ? 2 * cy + dy : h - 1;
                for (int dx = 0; dx < 2; dx++) {
                    const int x = 2 * cx + dx < w ? 2 * cx + dx : w - 1;
                    const uint8_t *p = rgb + (size_t)y * pitch + 3 * (size_t)x;
                    r += p[0], g += p[1], b += p[2];
                }
            }
            U[(size_t)cy * cw + cx] = rgb_u(r / 4, g / 4, b / 4);
            V[(size_t)cy * cw + cx] = rgb_v(r / 4, g / 4, b / 4);
        }
    }
}

static size_t yuv420_size(int w, int h) { return (size_t)w * h + 2 * (size_t)((w + 1) / 2) * ((h + 1) / 2); }

/* ---- FFmpeg ---- */

#if WM_RUN_HAVE_FFMPEG
static int av_fail(char *err, size_t err_size, const char *what, int code) {
    char buf[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(code, buf, sizeof buf);
    return fail(err, err_size, "%s: %s", what, buf);
}

/* Sends `frame` (NULL = flush) and writes every packet the encoder has ready. */
static int encode(video_writer *w, AVFrame *frame, char *err, size_t err_size) {
    int rc = avcodec_send_frame(w->enc, frame);
    if (rc < 0) return av_fail(err, err_size, "encoding a frame", rc);
    for (;;) {
        rc = avcodec_receive_packet(w->enc, w->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return 1;
        if (rc < 0) return av_fail(err, err_size, "encoding a frame", rc);
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        rc = av_interleaved_write_frame(w->fmt, w->pkt); /* takes the packet's reference */
        if (rc < 0) return av_fail(err, err_size, "writing a packet", rc);
    }
}

static void ffmpeg_free(video_writer *w) {
    if (w->fmt && w->fmt->pb && !(w->fmt->oformat->flags & AVFMT_NOFILE)) avio_closep(&w->fmt->pb);
    avformat_free_context(w->fmt);
    avcodec_free_context(&w->enc);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    sws_freeContext(w->sws);
    free(w->padded);
}

static int ffmpeg_open(video_writer *w, const char *path, double fps, const char *encoder, char *err,
                       size_t err_size) {
    av_log_set_level(AV_LOG_ERROR);
    w->enc_width = (w->width + 1) & ~1;
    w->enc_height = (w->height + 1) & ~1;
    const AVOutputFormat *ofmt = av_guess_format(NULL, path, NULL);
    if (!ofmt)
        return fail(err, err_size, "%s: no container for this extension (try .mp4, .mkv, .y4m or .rgb)",
                    path);
    int rc = avformat_alloc_output_context2(&w->fmt, ofmt, NULL, path);
    if (rc < 0 || !w->fmt) return av_fail(err, err_size, path, rc < 0 ? rc : AVERROR(ENOMEM));

    const AVCodec *codec = NULL;
    if (encoder) {
        codec = avcodec_find_encoder_by_name(encoder);
        if (!codec || codec->type != AVMEDIA_TYPE_VIDEO)
            return fail(err, err_size, "no FFmpeg video encoder named '%s'", encoder);
    } else {
        codec = avcodec_find_encoder_by_name("libx264");
        if (codec && avformat_query_codec(w->fmt->oformat, codec->id, FF_COMPLIANCE_NORMAL) != 1)
            codec = NULL;
        if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
        if (!codec) return fail(err, err_size, "FFmpeg has neither the libx264 nor the mpeg4 encoder");
    }
    if (avformat_query_codec(w->fmt->oformat, codec->id, FF_COMPLIANCE_NORMAL) == 0)
        return fail(err, err_size, "%s: the %s container cannot hold %s video (try .mp4 or .mkv)", path,
                    w->fmt->oformat->name, codec->name);

    w->st = avformat_new_stream(w->fmt, NULL);
    w->enc = avcodec_alloc_context3(codec);
    w->frame = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->st || !w->enc || !w->frame || !w->pkt)
        return fail(err, err_size, "out of memory opening %s", path);

    int num, den;
    fps_rational(fps, &num, &den);
    w->enc->codec_id = codec->id;
    w->enc->width = w->enc_width;
    w->enc->height = w->enc_height;
    w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->enc->time_base = (AVRational){den, num};
    w->enc->framerate = (AVRational){num, den};
    w->enc->sample_aspect_ratio = (AVRational){1, 1};
    w->enc->color_range = AVCOL_RANGE_MPEG;
    w->enc->colorspace = AVCOL_SPC_SMPTE170M;
    w->enc->color_primaries = AVCOL_PRI_SMPTE170M;
    w->enc->color_trc = AVCOL_TRC_SMPTE170M;
    if (!strcmp(codec->name, "libx264")) {
        /* Generated frames are small and precious: near-transparent quality. */
        av_opt_set(w->enc->priv_data, "preset", "medium", 0);
        av_opt_set(w->enc->priv_data, "crf", "18", 0);
    } else if (codec->id == AV_CODEC_ID_MPEG4) {
        w->enc->flags |= AV_CODEC_FLAG_QSCALE;
        w->enc->global_quality = FF_QP2LAMBDA * 3;
        w->enc->gop_size = 12;
    }
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    rc = avcodec_open2(w->enc, codec, NULL);
    if (rc < 0) return av_fail(err, err_size, codec->name, rc);
    rc = avcodec_parameters_from_context(w->st->codecpar, w->enc);
    if (rc < 0) return av_fail(err, err_size, "stream parameters", rc);
    w->st->time_base = w->enc->time_base;
    w->st->avg_frame_rate = w->enc->framerate;

    if (!(w->fmt->oformat->flags & AVFMT_NOFILE)) {
        rc = avio_open(&w->fmt->pb, path, AVIO_FLAG_WRITE);
        if (rc < 0) return av_fail(err, err_size, path, rc);
    }
    rc = avformat_write_header(w->fmt, NULL);
    if (rc < 0) return av_fail(err, err_size, path, rc);
    w->header_written = 1;

    w->frame->format = AV_PIX_FMT_YUV420P;
    w->frame->width = w->enc_width;
    w->frame->height = w->enc_height;
    rc = av_frame_get_buffer(w->frame, 0);
    if (rc < 0) return av_fail(err, err_size, "frame buffer", rc);
    w->sws = sws_getContext(w->enc_width, w->enc_height, AV_PIX_FMT_RGB24, w->enc_width, w->enc_height,
                            AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
    if (!w->sws) return fail(err, err_size, "swscale: cannot convert RGB24 to yuv420p");
    if (w->enc_width != w->width || w->enc_height != w->height) {
        w->padded = malloc((size_t)w->enc_width * w->enc_height * 3);
        if (!w->padded) return fail(err, err_size, "out of memory opening %s", path);
    }
    snprintf(w->desc, sizeof w->desc, "%s (%s) %dx%d yuv420p%s",
             codec->id == AV_CODEC_ID_H264 ? "H.264" : avcodec_get_name(codec->id), codec->name, w->enc_width,
             w->enc_height, w->padded ? " (padded to even)" : "");
    return 1;
}

static int ffmpeg_write(video_writer *w, const uint8_t *rgb, size_t pitch, char *err, size_t err_size) {
    if (w->padded) { /* repeat the last column and row */
        const size_t row = (size_t)w->enc_width * 3;
        for (int y = 0; y < w->enc_height; y++) {
            const uint8_t *src = rgb + (size_t)(y < w->height ? y : w->height - 1) * pitch;
            uint8_t *dst = w->padded + (size_t)y * row;
            memcpy(dst, src, (size_t)w->width * 3);
            if (w->enc_width > w->width)
                memcpy(dst + (size_t)w->width * 3, src + (size_t)(w->width - 1) * 3, 3);
        }
        rgb = w->padded;
        pitch = row;
    }
    int rc = av_frame_make_writable(w->frame);
    if (rc < 0) return av_fail(err, err_size, "frame buffer", rc);
    const uint8_t *src[1] = {rgb};
    const int stride[1] = {(int)pitch};
    sws_scale(w->sws, src, stride, 0, w->enc_height, w->frame->data, w->frame->linesize);
    w->frame->pts = w->n_frames;
    return encode(w, w->frame, err, err_size);
}

static int ffmpeg_close(video_writer *w, char *err, size_t err_size) {
    int ok = 1;
    if (w->header_written) {
        ok = encode(w, NULL, err, err_size);
        int rc = av_write_trailer(w->fmt);
        if (rc < 0 && ok) ok = av_fail(err, err_size, "finishing the file", rc);
    }
    ffmpeg_free(w);
    return ok;
}
#endif

/* ---- public ---- */

int video_writer_have_ffmpeg(void) { return WM_RUN_HAVE_FFMPEG; }

video_writer *video_writer_open(const char *path, int width, int height, double fps, const char *encoder,
                                char *err, size_t err_size) {
    if (width <= 0 || height <= 0 || !(fps > 0)) {
        fail(err, err_size, "%s: invalid video size %dx%d at %g fps", path, width, height, fps);
        return NULL;
    }
    video_writer *w = calloc(1, sizeof *w);
    if (!w) {
        fail(err, err_size, "out of memory");
        return NULL;
    }
    w->width = width;
    w->height = height;
    const char *ext = extension(path);
    if (!strcasecmp(ext, "y4m") || !strcasecmp(ext, "rgb")) {
        w->kind = strcasecmp(ext, "y4m") ? FMT_RGB : FMT_Y4M;
        w->f = fopen(path, "wb");
        if (!w->f) {
            fail(err, err_size, "%s: cannot open for writing", path);
            free(w);
            return NULL;
        }
        if (w->kind == FMT_Y4M) {
            int num, den;
            fps_rational(fps, &num, &den);
            w->yuv = malloc(yuv420_size(width, height));
            fprintf(w->f, "YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 C420jpeg XYSCSS=420JPEG\n", width, height, num,
                    den);
            snprintf(w->desc, sizeof w->desc, "YUV4MPEG2 %dx%d 4:2:0", width, height);
        } else {
            snprintf(w->desc, sizeof w->desc,
                     "raw RGB24 %dx%d (ffplay -f rawvideo -pixel_format rgb24 -video_size %dx%d -framerate "
                     "%g FILE)",
                     width, height, width, height, fps);
        }
        if (w->kind == FMT_Y4M && !w->yuv) {
            fail(err, err_size, "out of memory");
            fclose(w->f);
            free(w);
            return NULL;
        }
        return w;
    }
#if WM_RUN_HAVE_FFMPEG
    w->kind = FMT_FFMPEG;
    if (!ffmpeg_open(w, path, fps, encoder, err, err_size)) {
        ffmpeg_free(w);
        free(w);
        return NULL;
    }
    return w;
#else
    (void)encoder;
    fail(err, err_size, "%s: this wm-run was built without FFmpeg: write .y4m or .rgb instead", path);
    free(w);
    return NULL;
#endif
}

int video_writer_write(video_writer *w, const uint8_t *rgb, size_t pitch, char *err, size_t err_size) {
    int ok = 1;
    if (w->kind == FMT_Y4M) {
        rgb_to_yuv420(rgb, pitch, w->width, w->height, w->yuv);
        ok = fputs("FRAME\n", w->f) >= 0 &&
             fwrite(w->yuv, 1, yuv420_size(w->width, w->height), w->f) == yuv420_size(w->width, w->height);
    } else if (w->kind == FMT_RGB) {
        for (int y = 0; y < w->height && ok; y++)
            ok = fwrite(rgb + (size_t)y * pitch, 3, (size_t)w->width, w->f) == (size_t)w->width;
    } else {
#if WM_RUN_HAVE_FFMPEG
        if (!ffmpeg_write(w, rgb, pitch, err, err_size)) return 0;
#endif
    }
    if (!ok) return fail(err, err_size, "writing a frame failed (disk full?)");
    w->n_frames++;
    return 1;
}

int video_writer_close(video_writer *w, char *err, size_t err_size) {
    if (!w) return 1;
    int ok = 1;
    if (w->kind == FMT_FFMPEG) {
#if WM_RUN_HAVE_FFMPEG
        ok = ffmpeg_close(w, err, err_size);
#endif
    } else {
        if (fclose(w->f) != 0) ok = fail(err, err_size, "closing the video file failed (disk full?)");
        free(w->yuv);
    }
    free(w);
    return ok;
}

const char *video_writer_describe(const video_writer *w) { return w->desc; }
