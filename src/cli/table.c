/* table — see table.h. */
#include "table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct table {
	int ncols;
	size_t nrows, cap;
	char **cells; /* row-major, row 0 the headers */
};

static void add_row(table *t, va_list ap)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **cells = realloc(t->cells, cap * (size_t)t->ncols * sizeof *cells);
		if (cells == NULL)
			return;
		t->cells = cells;
		t->cap = cap;
	}
	for (int c = 0; c < t->ncols; c++) {
		const char *v = va_arg(ap, const char *);
		t->cells[t->nrows * (size_t)t->ncols + (size_t)c] = strdup(v ? v : "-");
	}
	t->nrows++;
}

table *table_new(int ncols, ...)
{
	table *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->ncols = ncols;
	va_list ap;
	va_start(ap, ncols);
	add_row(t, ap);
	va_end(ap);
	return t;
}

void table_add(table *t, ...)
{
	va_list ap;
	if (t == NULL)
		return;
	va_start(ap, t);
	add_row(t, ap);
	va_end(ap);
}

void table_print(const table *t, FILE *out)
{
	size_t width[32] = {0};
	if (t == NULL || t->ncols > 32)
		return;
	for (size_t r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];
			size_t len = s ? strlen(s) : 0;
			if (len > width[c])
				width[c] = len;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];
			if (c == t->ncols - 1)
				fprintf(out, "%s\n", s ? s : "");
			else
				fprintf(out, "%-*s  ", (int)width[c], s ? s : "");
		}
	}
}

void table_free(table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
