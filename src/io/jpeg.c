/* JPEG decoding through libjpeg-turbo into 8-bit gray or RGB. libjpeg reports errors by calling
 * error_exit, which must not return: ours longjmps back to the decoder with the message, so a
 * corrupt file is an error, never an exit() or a crash. Corrupt-data warnings (libjpeg would
 * fill the missing part with gray) are errors too, as a truncated PNG is. */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t first */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "cigt/error.h"
#include "cigt/image.h"

#define MAX_SCANS 256 /* progressive files with more scans are refused (decoding-time bound) */
#define MAX_MEMORY (256L << 20) /* libjpeg's own working memory */

struct jpeg_err {
	struct jpeg_error_mgr mgr; /* first: libjpeg casts cinfo->err to it */
	jmp_buf jmp;
	char msg[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo)
{
	struct jpeg_err *e = (struct jpeg_err *)cinfo->err;
	e->mgr.format_message(cinfo, e->msg);
	longjmp(e->jmp, 1);
}

/* Level -1 is a warning about corrupt data: refuse the file. Trace messages are dropped. */
static void on_message(j_common_ptr cinfo, int level)
{
	if (level < 0)
		on_error(cinfo);
}

/* Bounds the work a hostile progressive file can ask for (as TurboJPEG's scan limit does). */
static void on_progress(j_common_ptr cinfo)
{
	struct jpeg_decompress_struct *d = (struct jpeg_decompress_struct *)cinfo;
	if (d->is_decompressor && d->input_scan_number > MAX_SCANS) {
		struct jpeg_err *e = (struct jpeg_err *)cinfo->err;
		snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_SCANS);
		longjmp(e->jmp, 1);
	}
}

int cigt_image_decode_jpeg(const void *buf, size_t len, struct cigt_image *out, char *err,
			   size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (len < 4 || len > (size_t)0xffffffffu)
		return cigt_fail(err, errlen, CIGT_EFORMAT, "JPEG: %zu bytes is not a JPEG", len);
	struct jpeg_decompress_struct cinfo;
	struct jpeg_err je;
	struct jpeg_progress_mgr prog = {.progress_monitor = on_progress};
	/* Touched between setjmp and longjmp, so volatile (C11 7.13.2.1). */
	uint8_t *volatile px = NULL;
	volatile int rc = 0;
	memset(&cinfo, 0, sizeof cinfo); /* mem stays NULL until created: destroy is then a no-op */
	cinfo.err = jpeg_std_error(&je.mgr);
	je.mgr.error_exit = on_error;
	je.mgr.emit_message = on_message;
	je.msg[0] = 0;
	if (setjmp(je.jmp)) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "JPEG: %s", je.msg);
		goto out;
	}
	jpeg_create_decompress(&cinfo);
	cinfo.mem->max_memory_to_use = MAX_MEMORY;
	cinfo.progress = &prog;
	jpeg_mem_src(&cinfo, (const unsigned char *)buf, (unsigned long)len);
	jpeg_read_header(&cinfo, TRUE);
	if (cinfo.image_width > CIGT_IMAGE_MAX_SIDE || cinfo.image_height > CIGT_IMAGE_MAX_SIDE) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "JPEG: %ux%u is larger than %d pixels per side", cinfo.image_width,
			       cinfo.image_height, CIGT_IMAGE_MAX_SIDE);
		goto out;
	}
	const int c = cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
	if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "JPEG: CMYK images are not supported (convert to RGB)");
		goto out;
	}
	cinfo.out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_start_decompress(&cinfo);
	const size_t w = cinfo.output_width, h = cinfo.output_height;
	if (cinfo.output_components != c || w < 1 || h < 1) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "JPEG: unexpected output layout");
		goto out;
	}
	if (!(px = malloc(w * h * (size_t)c))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "JPEG: out of memory");
		goto out;
	}
	while (cinfo.output_scanline < h) {
		JSAMPROW row = px + (size_t)cinfo.output_scanline * w * (size_t)c;
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_decompress(&cinfo);
	out->w = (int)w;
	out->h = (int)h;
	out->c = c;
	out->px = px;
	px = NULL;
out:
	jpeg_destroy_decompress(&cinfo);
	free(px);
	return rc;
}
