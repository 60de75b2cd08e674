/* The arenas of src/train/arena.h: a list of chunks filled front to back. */
#include <stdlib.h>

#include "arena.h"

void *cigt__arena_alloc(struct arena *a, size_t bytes)
{
	bytes = (bytes + 63) & ~(size_t)63;
	for (struct chunk *c = a->cur; c; c = c->next) {
		a->cur = c;
		if (c->cap - c->used >= bytes) {
			void *p = c->data + c->used;
			c->used += bytes;
			return p;
		}
	}
	size_t cap = bytes > ((size_t)64 << 20) ? bytes : ((size_t)64 << 20);
	struct chunk *c = aligned_alloc(64, (sizeof *c + cap + 63) & ~(size_t)63);
	if (!c)
		return NULL;
	c->next = NULL;
	c->cap = cap;
	c->used = bytes;
	if (a->cur)
		a->cur->next = c;
	else
		a->head = c;
	a->cur = c;
	return c->data;
}

void cigt__arena_reset(struct arena *a)
{
	for (struct chunk *c = a->head; c; c = c->next)
		c->used = 0;
	a->cur = a->head;
}

void cigt__arena_free(struct arena *a)
{
	struct chunk *c = a->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = a->cur = NULL;
}
