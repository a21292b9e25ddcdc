/*
 * mysql_wire.h: the MySQL/MariaDB client/server protocol's packets and values. Pure C: no
 * Lua, no libuv, no allocation; the caller owns the bytes and every string points into
 * them. mysql.c (the protocol on the connection core) frames packets with mw_header, then
 * reads each payload with these functions; tests/fuzz/mysql_wire_fuzz.c drives them alone.
 *
 * Every parser takes one payload (p, n) and returns 0, or MW_ERROR when the bytes do not
 * hold what they should (a length past the end, a missing field): the caller then drops
 * the connection, since the stream can no longer be trusted.
 */
#ifndef LUAIO_MYSQL_WIRE_H
#define LUAIO_MYSQL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MW_ERROR (-1)
#define MW_MAX_CHUNK 0xffffffu /* a payload this long continues in the next packet */

/* Column types (the protocol's numbers). */
enum {
  MW_DECIMAL = 0,
  MW_TINY = 1,
  MW_SHORT = 2,
  MW_LONG = 3,
  MW_FLOAT = 4,
  MW_DOUBLE = 5,
  MW_NULL = 6,
  MW_TIMESTAMP = 7,
  MW_LONGLONG = 8,
  MW_INT24 = 9,
  MW_DATE = 10,
  MW_TIME = 11,
  MW_DATETIME = 12,
  MW_YEAR = 13,
  MW_NEWDATE = 14,
  MW_VARCHAR = 15,
  MW_BIT = 16,
  MW_JSON = 245,
  MW_NEWDECIMAL = 246,
  MW_ENUM = 247,
  MW_SET = 248,
  MW_TINY_BLOB = 249,
  MW_MEDIUM_BLOB = 250,
  MW_LONG_BLOB = 251,
  MW_BLOB = 252,
  MW_VAR_STRING = 253,
  MW_STRING = 254,
  MW_GEOMETRY = 255
};

#define MW_UNSIGNED_FLAG 32
#define MW_MORE_RESULTS 0x0008 /* server status: another result follows */
#define MW_IN_TRANS 0x0001     /* server status: a transaction is open */
#define MW_AUTOCOMMIT 0x0002   /* server status: autocommit is on */

/* A cursor over one payload. */
typedef struct {
  const uint8_t *p, *end;
} mw_buf;

/* The 4-byte header at p: payload length and sequence number. */
static inline uint32_t mw_header(const uint8_t *p, uint8_t *seq) {
  *seq = p[3];
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

/* A length-encoded integer: 0, 1 for the NULL marker (0xfb), MW_ERROR. */
int mw_lenenc(mw_buf *b, uint64_t *v);
/* A length-encoded string: 0 (s, n set), 1 for NULL, MW_ERROR. */
int mw_lenstr(mw_buf *b, const char **s, size_t *n);
/* Writes v as a length-encoded integer at out (at most 9 bytes); returns the end. */
uint8_t *mw_put_lenenc(uint8_t *out, uint64_t v);
size_t mw_lenenc_size(uint64_t v);

/* Is the payload the end of a list (EOF, or with CLIENT_DEPRECATE_EOF the OK that ends
 * rows)? A text row may also start with 0xfe (a first value of 16 MiB or more), but such a
 * row spans several packets: its joined payload is longer. */
static inline int mw_is_eof(const uint8_t *p, size_t n) {
  return n > 0 && n < MW_MAX_CHUNK && p[0] == 0xfe;
}

typedef struct {
  uint64_t affected_rows, insert_id;
  uint16_t status, warnings;
  const char *info;
  size_t info_len;
} mw_ok;
/* An OK packet (0x00, or 0xfe ending rows with CLIENT_DEPRECATE_EOF) or an old EOF
 * (0xfe, warnings and status only). */
int mw_parse_ok(const uint8_t *p, size_t n, mw_ok *ok);

typedef struct {
  uint16_t code;
  char sqlstate[6]; /* "HY000" when the server gave none */
  const char *message;
  size_t message_len;
} mw_err;
int mw_parse_err(const uint8_t *p, size_t n, mw_err *e);

typedef struct {
  const char *schema, *table, *name, *org_name;
  size_t schema_len, table_len, name_len, org_name_len;
  uint32_t length;
  uint16_t charset, flags;
  uint8_t type, decimals;
} mw_column;
int mw_parse_column(const uint8_t *p, size_t n, mw_column *col);

typedef struct {
  uint32_t stmt_id;
  uint16_t ncols, nparams, warnings;
} mw_prepared;
int mw_parse_prepared(const uint8_t *p, size_t n, mw_prepared *ok);

/* A value of a row. */
enum { MW_V_NULL, MW_V_INT, MW_V_UINT, MW_V_DOUBLE, MW_V_BYTES };
typedef struct {
  int kind;
  union {
    int64_t i;
    uint64_t u;
    double d;
  };
  const char *s; /* MW_V_BYTES */
  size_t n;
} mw_value;

/* Binary rows: starts one (the 0x00 header and the NULL bitmap) and returns the bitmap. */
int mw_binary_row(mw_buf *b, unsigned ncols, const uint8_t **nulls);
static inline int mw_binary_null(const uint8_t *nulls, unsigned i) {
  return nulls[(i + 2) >> 3] >> ((i + 2) & 7) & 1;
}
/* The next binary value of a column of type/flags/decimals. Dates and times are written
 * into tmp (at least 64 bytes) in the text protocol's format; a FLOAT is the double of its
 * shortest decimal form (1.1f reads 1.1, as the text protocol gives it). */
int mw_binary_value(mw_buf *b, uint8_t type, uint16_t flags, uint8_t decimals, mw_value *v,
                    char *tmp);

/* Text values: an integer column's digits (v: INT, or UINT past INT64_MAX); a float
 * column's text. MW_ERROR when the text is not such a number. */
int mw_text_int(const char *s, size_t n, mw_value *v);
int mw_text_double(const char *s, size_t n, double *d);

#endif
