/* JPEG decoding through libjpeg-turbo into 8-bit gray or RGB. libjpeg reports errors by calling
 * error_exit, which must not return: ours longjmps back to the decoder with the message, so a
 * corrupt file is an error, never an exit() or a crash. Corrupt-data warnings (libjpeg would
 * fill the missing part with gray) are errors too, as a truncated PNG is. */
#include <setjmp.h>
#include <stdint.h>
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

/* The marker segments from SOI to the first start-of-frame header, walked by their lengths as
 * the JPEG specification (ITU T.81, B.1.1) defines them: every segment starts with 0xff (fill
 * bytes 0xff allowed), TEM and RST0..7 stand alone, every other marker has a length of at least
 * 2 that covers its own two bytes. libjpeg is more lenient here (it skips garbage before a
 * marker and a COM or APPn segment whose length is below 2); the decoder refuses those, so that
 * the size this walk finds (cigtd checks it before decoding) is the size the decoder produces. */
int cigt_jpeg_frame_size(const void *buf, size_t len, int *w, int *h, char *err, size_t errlen)
{
	const uint8_t *b = buf;
	if (len < 4 || b[0] != 0xff || b[1] != 0xd8)
		return cigt_fail(err, errlen, CIGT_EFORMAT, "JPEG: no SOI marker at the start");
	size_t i = 2;
	while (i + 4 <= len) {
		if (b[i] != 0xff)
			return cigt_fail(err, errlen, CIGT_EFORMAT,
					 "JPEG: byte 0x%02x at offset %zu where a marker must start",
					 b[i], i);
		uint8_t mk = b[i + 1];
		if (mk == 0xff) { /* fill byte */
			i++;
			continue;
		}
		if (mk == 0x01 || (mk >= 0xd0 && mk <= 0xd7)) { /* TEM, RSTn: no length follows */
			i += 2;
			continue;
		}
		size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
		if (seg < 2)
			return cigt_fail(err, errlen, CIGT_EFORMAT,
					 "JPEG: marker 0x%02x at offset %zu has length %zu, less than "
					 "the 2 bytes of the length itself", mk, i, seg);
		if (mk >= 0xc0 && mk <= 0xcf && mk != 0xc4 && mk != 0xc8 && mk != 0xcc) {
			if (seg < 7 || i + 9 > len)
				return cigt_fail(err, errlen, CIGT_EFORMAT,
						 "JPEG: frame header at offset %zu is truncated", i);
			*h = (int)((unsigned)b[i + 5] << 8 | b[i + 6]);
			*w = (int)((unsigned)b[i + 7] << 8 | b[i + 8]);
			return 0;
		}
		if (mk == 0xd9 || mk == 0xda) /* end of image, or scan data before any frame */
			return cigt_fail(err, errlen, CIGT_EFORMAT,
					 "JPEG: marker 0x%02x at offset %zu before any frame header",
					 mk, i);
		i += 2 + seg;
	}
	return cigt_fail(err, errlen, CIGT_EFORMAT, "JPEG: no frame header (SOF) in %zu bytes", len);
}

int cigt_image_decode_jpeg(const void *buf, size_t len, struct cigt_image *out, char *err,
			   size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (len < 4 || len > (size_t)0xffffffffu)
		return cigt_fail(err, errlen, CIGT_EFORMAT, "JPEG: %zu bytes is not a JPEG", len);
	int fw, fh;
	if (cigt_jpeg_frame_size(buf, len, &fw, &fh, err, errlen))
		return CIGT_EFORMAT;
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
