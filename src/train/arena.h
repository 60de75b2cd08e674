/* Arenas: the memory of one trellis step. Every allocation of a step comes from the arena of
 * the thread that makes it, in 64-byte aligned pieces, and all of it becomes free again at the
 * next step with one reset (the chunks are kept, so a steady run stops allocating). */
#ifndef CIGT_ARENA_H
#define CIGT_ARENA_H

#include <stddef.h>

struct chunk {
	struct chunk *next;
	size_t cap, used;
	_Alignas(64) unsigned char data[];
};

struct arena {
	struct chunk *head, *cur;
};

/* 64-byte aligned memory for `bytes` from the arena (a new chunk of at least 64 MiB when the
 * current ones are full); valid until the arena is reset. NULL on ENOMEM. */
void *cigt__arena_alloc(struct arena *a, size_t bytes);
/* Makes all of the arena's memory free again, keeping its chunks. */
void cigt__arena_reset(struct arena *a);
/* Releases the arena's chunks. */
void cigt__arena_free(struct arena *a);

/* Allocates count elements for ptr from the arena `ar` in scope; a failure returns
 * CIGT_ENOMEM from the function that uses it. */
#define ALLOC(ptr, count)                                                               \
	do {                                                                            \
		if (!((ptr) = cigt__arena_alloc(ar, (size_t)(count) * sizeof *(ptr))))  \
			return CIGT_ENOMEM;                                             \
	} while (0)

#endif
