/*
 * http_parser.h: an incremental, allocation-free, zero-copy HTTP/1.1 parser (RFC 9112).
 *
 * Pure C, no libuv or Lua. Every output is a pointer + length into the caller's buffer; the
 * parser keeps no state between calls except what the caller passes back (last_len, the
 * chunked decoder struct). Usage, server side:
 *
 *   struct lhttp_header hdr[64];
 *   const char *method, *path;
 *   size_t method_len, path_len, nhdr = 64;
 *   int minor;
 *   int n = lhttp_parse_request(buf, len, &method, &method_len, &path, &path_len, &minor,
 *                               hdr, &nhdr, last_len);
 *   if (n == LHTTP_INCOMPLETE) { last_len = len; read more (431 if the buffer is full); }
 *   else if (n == LHTTP_TOO_MANY_HEADERS) answer 431 and close;
 *   else if (n < 0) answer 400 and close;
 *   else {                     // the header block is buf[0..n), nhdr headers were found
 *     struct lhttp_framing f;
 *     int r = lhttp_request_framing(hdr, nhdr, minor, &f);
 *     // r: 0 ok, LHTTP_ERROR -> 400, LHTTP_UNSUPPORTED -> 501; close after either.
 *     // f.body: LHTTP_BODY_NONE, LHTTP_BODY_LENGTH (f.content_length bytes follow) or
 *     // LHTTP_BODY_CHUNKED (feed what follows to lhttp_decode_chunked with a zeroed decoder).
 *     // f.keep_alive, f.flags (LHTTP_EXPECT_CONTINUE...) say what to do with the connection.
 *   }
 *
 * Return codes of the parse functions: > 0 bytes consumed (the header block, ending with
 * the empty line), LHTTP_ERROR (-1) malformed, LHTTP_INCOMPLETE (-2) need more bytes,
 * LHTTP_TOO_MANY_HEADERS (-3) more header lines than the caller's array holds.
 *
 * Strictness (docs/internals.md, "The HTTP/1.1 parser", has the reasons): lines end with
 * CRLF only (a bare LF or a bare CR is an error); the start line has exactly one SP between
 * its parts; only HTTP/1.0 and HTTP/1.1; no obs-fold, no whitespace before the colon, no
 * empty field names, no control characters (except HTAB in values) in targets, values or
 * reason phrases; up to 4 empty lines before a request line are skipped.
 */
#ifndef LHTTP_PARSER_H
#define LHTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LHTTP_ERROR (-1)            /* malformed: answer 400 */
#define LHTTP_INCOMPLETE (-2)       /* need more bytes */
#define LHTTP_TOO_MANY_HEADERS (-3) /* more headers than the array holds: answer 431 */
#define LHTTP_UNSUPPORTED (-4)      /* framing only: a transfer coding we do not do: 501 */

/* One header line; name and value point into the parsed buffer. The value has no
 * leading or trailing SP/HTAB; it may be empty (value_len 0). */
struct lhttp_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
};

/*
 * Parses a request's start line and headers from buf[0..len).
 *   *num_headers: in, the capacity of headers[]; out, the number found. Written only when
 *   the result is > 0, so the same variable can be passed again after LHTTP_INCOMPLETE.
 *   last_len: 0 on the first call for a message; on a re-parse after LHTTP_INCOMPLETE, the
 *   len of that call. Then only the new bytes are searched for the end of the header block
 *   and the whole block is parsed once it is there (against slowloris: a request sent a
 *   byte at a time costs O(n), not O(n^2)). Errors in bytes that arrive after the first
 *   call are therefore reported only once the block is complete: a full buffer with
 *   LHTTP_INCOMPLETE must be answered with 431 (or 400) by the caller.
 * The outputs are valid only when the result is > 0. A buffer longer than INT_MAX is
 * treated as if it ended there.
 */
int lhttp_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                        const char **path, size_t *path_len, int *minor_version,
                        struct lhttp_header *headers, size_t *num_headers, size_t last_len);

/* Parses a response's status line and headers; the same contract as lhttp_parse_request.
 * The status is 100..599; msg is the reason phrase (possibly empty). */
int lhttp_parse_response(const char *buf, size_t len, int *minor_version, int *status,
                         const char **msg, size_t *msg_len, struct lhttp_header *headers,
                         size_t *num_headers, size_t last_len);

/* --- body framing and connection semantics (RFC 9112 section 6, RFC 9110 7.6.1, 10.1.1) --- */

enum {
  LHTTP_BODY_NONE = 0,    /* no body */
  LHTTP_BODY_LENGTH,      /* content_length bytes (possibly 0) */
  LHTTP_BODY_CHUNKED,     /* chunked: use lhttp_decode_chunked */
  LHTTP_BODY_UNTIL_CLOSE, /* responses only: the body ends when the connection closes */
};

/* flags */
#define LHTTP_CONN_CLOSE 0x01      /* Connection: close */
#define LHTTP_CONN_KEEP_ALIVE 0x02 /* Connection: keep-alive */
#define LHTTP_CONN_UPGRADE 0x04    /* Connection: upgrade (the Upgrade header says to what) */
#define LHTTP_EXPECT_CONTINUE 0x08 /* requests: Expect: 100-continue (HTTP/1.1 only) */
#define LHTTP_EXPECT_OTHER 0x10    /* requests: another expectation (a server may answer 417) */

struct lhttp_framing {
  int body;                /* LHTTP_BODY_* */
  int keep_alive;          /* 1 when the connection may carry another message after this one */
  unsigned flags;          /* LHTTP_CONN_*, LHTTP_EXPECT_* */
  uint64_t content_length; /* for LHTTP_BODY_LENGTH; at most INT64_MAX */
  const char *host;        /* requests: the Host value, NULL when absent (HTTP/1.0 only) */
  size_t host_len;
};

/*
 * Decides how a request's body is framed. Returns 0, LHTTP_ERROR (answer 400 and close) or
 * LHTTP_UNSUPPORTED (a transfer coding other than chunked: answer 501 and close).
 * Errors: Transfer-Encoding with Content-Length (request smuggling), Transfer-Encoding in
 * HTTP/1.0, a Transfer-Encoding whose last coding is not chunked or that names chunked
 * twice, a Content-Length that is not 1*DIGIT (no sign, no space, at most INT64_MAX),
 * several Content-Length values that differ (identical repeats, as "5, 5" or two lines,
 * are accepted as RFC 9110 8.6 allows), no Host in HTTP/1.1, more than one Host.
 */
int lhttp_request_framing(const struct lhttp_header *headers, size_t num_headers, int minor_version,
                          struct lhttp_framing *out);

/*
 * The same for a response to a request; head_request is 1 when the request was HEAD (then,
 * as for 1xx, 204 and 304, there is no body whatever the headers say). Returns 0 or
 * LHTTP_ERROR (Transfer-Encoding with Content-Length, Transfer-Encoding in HTTP/1.0, a bad
 * or conflicting Content-Length). A Transfer-Encoding not ending in chunked means
 * LHTTP_BODY_UNTIL_CLOSE. CONNECT tunnels are not handled.
 */
int lhttp_response_framing(const struct lhttp_header *headers, size_t num_headers,
                           int minor_version, int status, int head_request,
                           struct lhttp_framing *out);

/* --- request targets (RFC 9112 3.2, RFC 3986) -------------------------------------------- */

/* A Host value (or the authority of an absolute-form target): uri-host [":" port], where
 * uri-host is an IP literal in brackets, or reg-name characters (unreserved, %XX,
 * sub-delims): no spaces, no "/", "@" or other delimiters. An empty host is valid. */
int lhttp_valid_host(const char *s, size_t n);

enum { LHTTP_TARGET_ORIGIN = 1, LHTTP_TARGET_ABSOLUTE, LHTTP_TARGET_ASTERISK };

/* The parts of a request target; pointers into the target (path may point to a static
 * "/" for an absolute-form target without a path). query is NULL when there is no "?". */
struct lhttp_target {
  int form;
  const char *path, *query, *authority;
  size_t path_len, query_len, authority_len;
};

/* Splits a request target: origin-form ("/p?q"), absolute-form ("http://host/p?q",
 * http or https, any case) or "*". Returns 0, or LHTTP_ERROR for anything else (an
 * authority-form, another scheme, a bad authority, a "#": clients never send a fragment). */
int lhttp_parse_target(const char *t, size_t n, struct lhttp_target *out);

/* Percent-decodes a path into dst (room for n bytes): returns the decoded length, or
 * LHTTP_ERROR for a "%" not followed by two hex digits, or one that decodes to NUL. "+"
 * stays "+" (it means a space only in a query). dst may be src. */
ssize_t lhttp_decode_path(char *dst, const char *src, size_t n);

/* --- chunked transfer coding (RFC 9112 section 7.1) ------------------------------------- */

/* Limits: a chunk size has at most 16 hex digits and stays below 2^63; the extensions of
 * one chunk line take at most LHTTP_MAX_CHUNK_EXT bytes; the trailer section at most
 * LHTTP_MAX_TRAILERS bytes; once the framing bytes exceed 64 KiB they may be at most 8
 * times the data bytes (a flood of extensions or empty-looking chunks is an error). */
#define LHTTP_MAX_CHUNK_EXT 4096
#define LHTTP_MAX_TRAILERS 8192

/* Zero-fill before the first call for a body; treat the fields as private. */
struct lhttp_chunked_decoder {
  uint64_t remaining; /* data bytes left in the current chunk */
  uint64_t data;      /* data bytes decoded so far */
  uint64_t overhead;  /* framing bytes (sizes, extensions, CRLFs, trailers) so far */
  unsigned count;     /* digits of the size, extension bytes or trailer bytes */
  int state;
};

/*
 * Decodes the chunked body in buf[0..*bufsz) in place. On return buf[0..*bufsz) holds the
 * data decoded by this call.
 *   >= 0: the body is complete (last chunk and trailers consumed); the result is the
 *         number of bytes that followed the body (the next pipelined message), moved to
 *         buf[*bufsz .. *bufsz + result).
 *   LHTTP_INCOMPLETE: all input consumed, call again with more bytes.
 *   LHTTP_ERROR: malformed (answer 400 and close).
 * Trailer fields are checked (name ":" value, no obs-fold, no control characters) and
 * dropped.
 */
ssize_t lhttp_decode_chunked(struct lhttp_chunked_decoder *decoder, char *buf, size_t *bufsz);

#endif
