/*
 * table — aligned text tables for the listing commands (status, runs,
 * incidents). Cells are copied; columns are as wide as their widest cell.
 */
#ifndef FK_TABLE_H
#define FK_TABLE_H

#include <stdio.h>

typedef struct table table;

/* ncols column headers follow. */
table *table_new(int ncols, ...);
/* One row of ncols strings (NULL prints "-"). */
void table_add(table *t, ...);
void table_print(const table *t, FILE *out);
void table_free(table *t);

#endif
