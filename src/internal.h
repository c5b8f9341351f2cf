/* Helpers shared by the C files of luatls.core; nothing here is exported. */
#ifndef LUATLS_INTERNAL_H
#define LUATLS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <gnutls/gnutls.h>
#include "compat.h"

#define LUATLS_EXPORT __attribute__((visibility("default")))

/* Shared, reference-counted credentials: a Context owns one reference, each
 * Session another, so Lua may collect them in either order. */
typedef struct luatls_ctx {
	int refs;
	int server;
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
	gnutls_datum_t *alpn;
	unsigned nalpn;
	gnutls_certificate_request_t client_auth;
	gnutls_datum_t ticket_key;
	gnutls_anti_replay_t antireplay; /* servers with early data (resume.c) */
	int keypairs;
	int trusted;
} luatls_ctx;

void luatls_ctx_ref(luatls_ctx *c);
void luatls_ctx_unref(luatls_ctx *c);
/* Returns the shared credentials of the Context at index i, raising if it
 * is not an open Context. */
luatls_ctx *luatls_check_ctx(lua_State *L, int i);

/* Failure triples: push nil, message, code and return 3. */
int luatls_fail(lua_State *L, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int luatls_fail_gnutls(lua_State *L, int err, const char *what);
int luatls_fail_errno(lua_State *L, int err, const char *what);
/* Parses a priority string into *p: 0, or pushes nil, message (pointing at
 * the bad part), code and returns 3. */
int luatls_priority_init(lua_State *L, const char *s, gnutls_priority_t *p);
/* nil, "would block (read|write)", "wantread"|"wantwrite" */
int luatls_wouldblock(lua_State *L, int writing);

/* Creates a zeroed userdata of the given metatable, with no references
 * yet: [-0, +1] */
void *luatls_newobject(lua_State *L, size_t size, const char *mt);
/* luaL_checkudata, with the metatable found by the address of its name
 * (the name must be the one given to luatls_newclass): the check made by
 * every method, so it avoids making a Lua string of the name each time. */
void *luatls_checkudata(lua_State *L, int i, const char *name);
/* Pushes the table of references of the object at index obj (its
 * uservalue), making it if it has none: [-0, +1] */
void luatls_refs(lua_State *L, int obj);
/* Stores the value at the top under key in the references of the object
 * at index obj: [-1, +0] */
void luatls_setref(lua_State *L, int obj, const char *key);
/* Registers a metatable with __index = methods and the given metamethods. */
void luatls_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
		     const luaL_Reg *meta);
/* Checks that arg i is a table whose keys are all in allowed (NULL-ended). */
void luatls_checkoptions(lua_State *L, int i, const char *const allowed[]);
/* Reads an optional string/boolean field of the options table at i. */
const char *luatls_optfield_string(lua_State *L, int i, const char *key);
int luatls_optfield_boolean(lua_State *L, int i, const char *key, int def);

/* Whether the data holds a PEM block ("-----BEGIN" anywhere in it). */
int luatls_is_pem(const gnutls_datum_t *d);
/* Pushes an owned Certificate object copied from DER: [-0, +1] */
int luatls_push_certificate(lua_State *L, const gnutls_datum_t *der);
/* Pushes the list of verification reasons (strings) for a GnuTLS status. */
void luatls_push_verify_reasons(lua_State *L, unsigned status);

/* X.509 objects (x509.c, key.c, crl.c, store.c, x509_gen.c). The checkers
 * raise unless arg i is an open object; the constructors push a zeroed
 * object and return its slot for the GnuTLS resource: [-0, +1] */
gnutls_x509_crt_t luatls_check_crt(lua_State *L, int i);
gnutls_x509_crt_t *luatls_new_crt(lua_State *L);
gnutls_x509_privkey_t luatls_check_key(lua_State *L, int i);
gnutls_x509_privkey_t *luatls_new_key(lua_State *L);
gnutls_x509_crl_t luatls_check_crl(lua_State *L, int i);
gnutls_x509_crl_t *luatls_new_crl(lua_State *L);
/* The string at arg i as a datum (borrowed from Lua). */
gnutls_datum_t luatls_checkdatum(lua_State *L, int i);
void luatls_push_hex(lua_State *L, const unsigned char *p, size_t n);
/* "sha256/<base64>" of a DER SubjectPublicKeyInfo: [-0, +1|3] */
int luatls_push_spki_pin(lua_State *L, const gnutls_datum_t *spki);
/* { algorithm, bits, curve, oid, pin } of a public key: [-0, +1|3] */
int luatls_push_pubkey_info(lua_State *L, gnutls_pubkey_t pub);
/* Names of key usage bits and of extended key usage OIDs (NULL-ended). */
typedef struct { unsigned flag; const char *name; } luatls_flagname;
typedef struct { const char *oid; const char *name; } luatls_oidname;
extern const luatls_flagname luatls_key_usages[];
extern const luatls_oidname luatls_purposes[];
/* Certificate methods for the extensions (x509_ext.c). */
extern const luaL_Reg luatls_cert_ext_methods[];

/* Resumption and early data of one Session (resume.c). GnuTLS calls the
 * session-cache and anti-replay stores (Lua) from inside its own calls:
 * L is the caller's state while such a call runs (stack index 1 holds the
 * Session), NULL otherwise. */
typedef struct luatls_resume {
	lua_State *L;
	const void *self;         /* the Session userdata */
	gnutls_anti_replay_t ar;  /* servers: the context's, when early data is on */
	int server;
	int no_resumption;
	int cache;                /* servers: a session-ID store is set */
	unsigned lifetime;        /* seconds; 0: GnuTLS's default */
	unsigned early_max;       /* servers: early data accepted, bytes (0: none) */
	int early_offered;        /* servers: the ClientHello carried early_data */
	int replay;               /* servers: REPLAY_* of resume.c */
	size_t early_sent;        /* clients: bytes queued as early data */
	size_t early_received;    /* servers: bytes read as early data */
	char *note;               /* clients: why there was no early data */
} luatls_resume;

/* gnutls_init flags for the options table at opts (early_data, resumption). */
unsigned luatls_resume_flags(lua_State *L, int opts, int server);
/* Applies the resumption options at opts to a new session whose userdata
 * is at obj: tickets, lifetime, stores, early data. GnuTLS error or 0. */
int luatls_resume_setup(lua_State *L, int opts, int obj, gnutls_session_t s,
			luatls_resume *rs, luatls_ctx *c);
/* Frees what the resumption state holds (once the session is closed). */
void luatls_resume_free(luatls_resume *rs);
/* Around each GnuTLS call that may call the stores back. */
void luatls_resume_enter(lua_State *L, luatls_resume *rs);
void luatls_resume_leave(luatls_resume *rs);
/* Adds early_data (and early_data_max) to the info table at the top. */
void luatls_resume_info(lua_State *L, gnutls_session_t s, luatls_resume *rs);
/* The GnuTLS session of the open Session at arg i (raises if closed) and
 * its resumption state; *open tells whether the handshake is done. */
gnutls_session_t luatls_check_session(lua_State *L, int i, luatls_resume **rs,
				      int *open);
void luatls_open_resume(lua_State *L);

/* A server handshake driven by an io watcher (session.c for loop.c): the
 * Session at arg i if it can be driven without Lua, else NULL; the start,
 * with the watcher's slot for the session (and with now, the first
 * attempt); the next attempts. Both return 0 when the handshake is over
 * (sess:handshake() reports it), else 1 (wait to read) or 2 (to write).
 * undrive: the watcher lets go. */
void *luatls_session_driveable(lua_State *L, int i);
int luatls_session_drive(void *ss, void **slot, int now);
int luatls_session_advance(void *ss);
void luatls_session_undrive(void *ss);

/* The server handshake of an acceptor (acceptor.c) is driven as a
 * watcher's is. drove_ok: the drive ended in an established session,
 * whose result it takes (1), or not (0: sess:handshake() tells). */
int luatls_session_drove_ok(void *ss);
/* core.session(ctx, opts) */
int luatls_session_new(lua_State *L);

/* Sockets (socket.c): accept on a listening descriptor (-1 and errno, which
 * is EAGAIN when none waits), "address:port" of a peer, a new Socket whose
 * descriptor the caller sets, the descriptor of a listening Socket, that
 * of any Socket (-1: closed). */
struct sockaddr_storage;
int luatls_accept_fd(int lfd, struct sockaddr_storage *sa);
void luatls_push_peer(lua_State *L, const struct sockaddr_storage *sa);
int *luatls_new_socket(lua_State *L);
int luatls_check_listening(lua_State *L, int i);
int luatls_socket_fd(lua_State *L, int i);

/* The loop (loop.c), for the acceptor: a reference to the loop of the Loop
 * at arg i, given back with unref; its libev loop; an id reported by the
 * next loop:step(); a new io Watcher for fd (stopped, reading): [-0, +1],
 * known when an io watcher of the loop has been started on fd and fd has
 * stayed open since (libev then keeps its registration of fd, which a
 * descriptor number used again would need made anew). check_time: a
 * number argument that is not NaN. */
struct ev_loop;
void *luatls_loop_ref(lua_State *L, int i);
void luatls_loop_unref(void *lc);
struct ev_loop *luatls_loop_ev(void *lc);
void luatls_loop_ready(void *lc, lua_Integer id);
void luatls_loop_push_io(lua_State *L, void *lc, lua_Integer id, int fd,
			 int known);
double luatls_check_time(lua_State *L, int i);

struct ev_loop *luatls_host_loop(lua_State *L);

void luatls_open_context(lua_State *L);
void luatls_open_session(lua_State *L);
void luatls_open_socket(lua_State *L);
void luatls_open_loop(lua_State *L);
void luatls_open_acceptor(lua_State *L);
void luatls_open_x509(lua_State *L);
void luatls_open_key(lua_State *L);
void luatls_open_crl(lua_State *L);
void luatls_open_store(lua_State *L);
void luatls_open_x509_gen(lua_State *L);
void luatls_open_policy(lua_State *L);

#endif
