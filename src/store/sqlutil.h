/* store/sqlutil.h: SQLite helpers shared by the SQLite backend (sqlite.c) and the store
 * extensions that run their SQL on its connection (gm.c, ipp.c, km.c). Private to store/. */
#ifndef SG_STORE_SQLUTIL_H
#define SG_STORE_SQLUTIL_H

#include "store/backend.h"

#include <sqlite3.h>
#include <stddef.h>

/* Reads the current row of q into elem; ctx is the caller's (sqlite.c: its connection). */
typedef sg_err (*sg_sql_read_fn)(void *ctx, sqlite3_stmt *q, void *elem);

/* Grows a caller-owned array of n elements of size sz by one zeroed element (capacity doubles,
 * from 8). NULL when out of memory; v is then unchanged. */
void *sg_sql_grow(void *v, size_t *cap, size_t n, size_t sz);

/* Steps q until it returns no more rows, appending one zeroed element of size sz to *v per row
 * and filling it with read(ctx, q, elem). An element whose read failed still counts, so the
 * caller's list free releases what it holds (and *v, *cnt are the caller's to free on error).
 * Returns the read or out-of-memory error; *rc gets the last sqlite3_step() result. */
sg_err sg_sql_collect(sqlite3_stmt *q, size_t sz, sg_sql_read_fn read, void *ctx, void **v,
                      size_t *cnt, int *rc);

/* ---- store extensions (gm.c, ipp.c, km.c) ---- */

/* The error of a failed statement: SG_ERR_EXISTS for a key constraint, else SG_ERR_IO. */
sg_err sg_sql_fail(sqlite3 *db, int rc, const char *what);

/* Opens a transaction and hands out the handle; SG_ERR_CONFIG ("store: <feature> needs the
 * sqlite backend") for a non-SQLite backend. */
sg_err sg_sql_begin(struct sg_store *st, const char *feature, sqlite3 **db);

/* Commits when e is SG_OK, else rolls back; returns the result. */
sg_err sg_sql_end(struct sg_store *st, sg_err e);

/* A text column as a new string ("" for NULL); NULL when out of memory. */
char *sg_sql_dup_col(sqlite3_stmt *q, int i);

/* Prepares sql, binds the arguments described by fmt ('t' const char *, NULL binds NULL;
 * 'i' int64_t; 'b' const void *, size_t: a blob) and runs it once, expecting no row. */
sg_err sg_sql_exec(sqlite3 *db, const char *what, const char *sql, const char *fmt, ...);

/* sg_sql_exec() in its own transaction. With notfound non-NULL, SG_ERR_NOTFOUND
 * ("store: <notfound>") when no row changed. */
sg_err sg_sql_write(struct sg_store *st, const char *feature, const char *what,
                    const char *notfound, const char *sql, const char *fmt, ...);
/* sg_sql_write() without a notfound, telling how many rows changed (*changed, may be NULL;
 * 0 on error). */
sg_err sg_sql_write_count(struct sg_store *st, const char *feature, const char *what,
                          size_t *changed, const char *sql, const char *fmt, ...);

/* A reader of the first two columns as integers (counts, sums) into a struct sg_sql_int2. */
struct sg_sql_int2 {
	int64_t a, b;
};
sg_err sg_sql_read_int2(void *ctx, sqlite3_stmt *q, void *elem);

/* Runs a SELECT (bound as sg_sql_exec()) in its own transaction and reads its first row into
 * out; SG_ERR_NOTFOUND ("store: <notfound>") when there is none. */
sg_err sg_sql_get(struct sg_store *st, const char *feature, const char *what, const char *notfound,
                  sg_sql_read_fn read, void *out, const char *sql, const char *fmt, ...);

/* Runs a SELECT (bound as sg_sql_exec()) in its own transaction and collects its rows
 * (sg_sql_collect()). On error the caller frees *v, *cnt with its list free. */
sg_err sg_sql_list(struct sg_store *st, const char *feature, const char *what, size_t sz,
                   sg_sql_read_fn read, void **v, size_t *cnt, const char *sql, const char *fmt,
                   ...);

#endif
