/* luatls.Socket: a non-blocking TCP socket, just enough to carry TLS:
 * resolve, connect, listen, accept, raw send/recv, addresses. */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK: one call instead of three */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "internal.h"

#define SOCKET_MT "luatls.Socket"

typedef struct {
	int fd;
	int listening;
	/* a listening socket's accepted descriptor, plus one, while its
	 * Socket is made (0: none); see socket_accept */
	int pending;
} Socket;

static Socket *check_socket(lua_State *L, int i)
{
	Socket *so = (Socket *)luatls_checkudata(L, i, SOCKET_MT);
	if (so->fd < 0)
		luaL_error(L, "socket is closed");
	return so;
}

#ifndef SOCK_NONBLOCK
static int set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}
#endif

/* A new non-blocking, close-on-exec TCP socket. */
static int open_fd(int family)
{
#ifdef SOCK_NONBLOCK
	return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd >= 0 && set_nonblocking(fd) < 0) {
		close(fd);
		return -1;
	}
	return fd;
#endif
}

static void set_nodelay(int fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Parses a numeric address into sa; returns its length or 0. */
static socklen_t parse_address(const char *host, int port,
			       struct sockaddr_storage *sa)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	memset(sa, 0, sizeof *sa);
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((unsigned short)port);
		return sizeof *in4;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
		return sizeof *in6;
	}
	return 0;
}

static void push_address(lua_State *L, const struct sockaddr_storage *sa)
{
	char buf[INET6_ADDRSTRLEN];
	int port = 0;
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf);
		port = ntohs(in4->sin_port);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
		port = ntohs(in6->sin6_port);
	} else {
		strcpy(buf, "?");
	}
	lua_pushstring(L, buf);
	lua_pushinteger(L, port);
}

static int check_port(lua_State *L, int i)
{
	lua_Integer port = luaL_checkinteger(L, i);
	if (port < 0 || port > 65535)
		luaL_argerror(L, i, "port must be 0 to 65535");
	return (int)port;
}

/* core.resolve(host) -> { "addr", ... } | nil, message, code.
 * Uses getaddrinfo, which blocks: name lookups of remote hosts stall the
 * loop; numeric addresses and /etc/hosts names return at once. */
static int socket_resolve(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	struct addrinfo hints, *res, *ai;
	int r, n = 0;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0)
		return luatls_fail(L, "resolve", "cannot resolve host '%s': %s",
				   host, gai_strerror(r));
	lua_newtable(L);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof ss);
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		push_address(L, &ss);
		lua_pop(L, 1);
		lua_rawseti(L, -2, ++n);
	}
	freeaddrinfo(res);
	return 1;
}

static Socket *new_socket(lua_State *L)
{
	Socket *so = (Socket *)luatls_newobject(L, sizeof *so, SOCKET_MT);
	so->fd = -1;
	return so;
}

/* Pushes a new non-blocking Socket for the numeric address host; on
 * failure pushes nil, message, code instead and returns NULL. */
static Socket *open_socket(lua_State *L, const char *host, int port,
			   struct sockaddr_storage *sa, socklen_t *len)
{
	Socket *so;
	*len = parse_address(host, port, sa);
	if (*len == 0)
		luaL_argerror(L, 1, "not a numeric IP address");
	so = new_socket(L);
	so->fd = open_fd(sa->ss_family);
	if (so->fd < 0) {
		luatls_fail_errno(L, errno, "socket");
		return NULL;
	}
	return so;
}

/* core.tcp_connect(address, port) -> Socket (connecting) | nil, msg, code.
 * Wait until writable, then call sock:connected(). */
static int socket_connect(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	int port = check_port(L, 2);
	struct sockaddr_storage sa;
	socklen_t len;
	Socket *so = open_socket(L, host, port, &sa, &len);
	if (so == NULL)
		return 3;
	set_nodelay(so->fd);
	if (connect(so->fd, (struct sockaddr *)&sa, len) < 0 &&
	    errno != EINPROGRESS) {
		int err = errno;
		lua_pushfstring(L, "cannot connect to %s port %d", host, port);
		return luatls_fail_errno(L, err, lua_tostring(L, -1));
	}
	return 1;
}

/* sock:connected() -> true | nil, message, code: the outcome of connect */
static int socket_connected(lua_State *L)
{
	Socket *so = check_socket(L, 1);
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(so->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0)
		return luatls_fail_errno(L, err, "connect");
	lua_pushboolean(L, 1);
	return 1;
}

/* core.tcp_listen(address, port [, backlog]) -> Socket | nil, msg, code */
static int socket_listen(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	int port = check_port(L, 2), one = 1;
	int backlog = (int)luaL_optinteger(L, 3, 1024);
	struct sockaddr_storage sa;
	socklen_t len;
	Socket *so = open_socket(L, host, port, &sa, &len);
	if (so == NULL)
		return 3;
	so->listening = 1;
	(void)setsockopt(so->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(so->fd, (struct sockaddr *)&sa, len) < 0 ||
	    listen(so->fd, backlog) < 0) {
		int err = errno;
		lua_pushfstring(L, "cannot listen on %s port %d", host, port);
		return luatls_fail_errno(L, err, lua_tostring(L, -1));
	}
	return 1;
}

/* Accepts one connection on the listening descriptor lfd: the new
 * descriptor (non-blocking, close-on-exec, no Nagle) with the peer's
 * address in sa, or -1 with errno (EAGAIN for an empty backlog: EINTR and
 * ECONNABORTED read as that too). */
int luatls_accept_fd(int lfd, struct sockaddr_storage *sa)
{
	socklen_t len = sizeof *sa;
	int fd;
#ifdef SOCK_NONBLOCK
	fd = accept4(lfd, (struct sockaddr *)sa, &len,
		     SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
	fd = accept(lfd, (struct sockaddr *)sa, &len);
	if (fd >= 0 && set_nonblocking(fd) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
#endif
	if (fd < 0) {
		if (errno == EWOULDBLOCK || errno == EINTR ||
		    errno == ECONNABORTED)
			errno = EAGAIN;
		return -1;
	}
	set_nodelay(fd);
	return fd;
}

/* Pushes "address:port" of sa: [-0, +1] */
void luatls_push_peer(lua_State *L, const struct sockaddr_storage *sa)
{
	push_address(L, sa);
	lua_pushliteral(L, ":");
	lua_insert(L, -2);
	lua_concat(L, 3);
}

/* Pushes a new Socket without a descriptor yet and returns where its
 * descriptor goes: [-0, +1] */
int *luatls_new_socket(lua_State *L)
{
	return &new_socket(L)->fd;
}

/* The descriptor of the Socket at arg i, -1 once it is closed. */
int luatls_socket_fd(lua_State *L, int i)
{
	return ((Socket *)luatls_checkudata(L, i, SOCKET_MT))->fd;
}

/* The descriptor of the listening Socket at arg i (raises otherwise). */
int luatls_check_listening(lua_State *L, int i)
{
	Socket *so = check_socket(L, i);
	if (!so->listening)
		luaL_argerror(L, i, "a listening socket expected");
	return so->fd;
}

/* sock:accept() -> Socket, peer address, peer port, descriptor | nil,
 * message, code */
static int socket_accept(lua_State *L)
{
	Socket *so = check_socket(L, 1), *client;
	struct sockaddr_storage sa;
	int fd;
	if (so->pending > 0) { /* accepted before making its object failed */
		socklen_t len = sizeof sa;
		fd = so->pending - 1;
		if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
			memset(&sa, 0, sizeof sa);
	} else {
		fd = luatls_accept_fd(so->fd, &sa);
		if (fd < 0) {
			if (errno == EAGAIN)
				return luatls_wouldblock(L, 0);
			return luatls_fail_errno(L, errno, "accept");
		}
	}
	/* The object after the accept, so that an empty backlog makes none;
	 * should making it fail (out of memory), the descriptor stays with
	 * the listening socket, for the next accept or its close. */
	so->pending = fd + 1;
	client = new_socket(L);
	so->pending = 0;
	client->fd = fd;
	push_address(L, &sa);
	lua_pushinteger(L, fd);
	return 4;
}

/* sock:send(data [, i]) -> bytes | nil, message, code (plain bytes) */
static int socket_send(lua_State *L)
{
	Socket *so = check_socket(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Integer i = luaL_optinteger(L, 3, 1);
	ssize_t r;
	if (i < 1 || (size_t)i > len + 1)
		return luaL_argerror(L, 3, "position out of range");
	r = send(so->fd, data + i - 1, len - (size_t)(i - 1), MSG_NOSIGNAL);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return luatls_wouldblock(L, 1);
		if (errno == EPIPE || errno == ECONNRESET)
			return luatls_fail(L, "closed", "send: %s", strerror(errno));
		return luatls_fail_errno(L, errno, "send");
	}
	lua_pushinteger(L, (lua_Integer)r);
	return 1;
}

/* sock:recv([max]) -> data | nil, message, code ("closed" at the end) */
static int socket_recv(lua_State *L)
{
	Socket *so = check_socket(L, 1);
	char buf[16384];
	lua_Integer max = luaL_optinteger(L, 2, sizeof buf);
	ssize_t r;
	if (max <= 0 || max > (lua_Integer)sizeof buf)
		max = sizeof buf;
	r = recv(so->fd, buf, (size_t)max, 0);
	if (r > 0) {
		lua_pushlstring(L, buf, (size_t)r);
		return 1;
	}
	if (r == 0)
		return luatls_fail(L, "closed", "closed");
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return luatls_wouldblock(L, 0);
	if (errno == ECONNRESET)
		return luatls_fail(L, "closed", "recv: %s", strerror(errno));
	return luatls_fail_errno(L, errno, "recv");
}

/* sock:shutdown() closes the writing half */
static int socket_shutdown(lua_State *L)
{
	Socket *so = check_socket(L, 1);
	(void)shutdown(so->fd, SHUT_WR);
	return 0;
}

static int address_of(lua_State *L, int peer)
{
	Socket *so = check_socket(L, 1);
	struct sockaddr_storage sa;
	socklen_t len = sizeof sa;
	int r = peer ? getpeername(so->fd, (struct sockaddr *)&sa, &len)
		     : getsockname(so->fd, (struct sockaddr *)&sa, &len);
	if (r < 0)
		return luatls_fail_errno(L, errno, peer ? "getpeername" : "getsockname");
	push_address(L, &sa);
	return 2;
}

/* sock:local_address() -> address, port */
static int socket_local_address(lua_State *L)
{
	return address_of(L, 0);
}

/* sock:peer_address() -> address, port */
static int socket_peer_address(lua_State *L)
{
	return address_of(L, 1);
}

/* sock:fd() -> the file descriptor */
static int socket_fd(lua_State *L)
{
	lua_pushinteger(L, check_socket(L, 1)->fd);
	return 1;
}

/* Reads and drops what the peer sent and nobody read (at most 1 MiB, never
 * waiting): closing a TCP socket with unread bytes makes the kernel reset
 * the connection and throw away what it had not sent yet, such as the
 * end of a large send followed by close. A TLS 1.3 client that never reads
 * has the server's session tickets unread. */
static void drain(int fd)
{
	char buf[16384];
	int i;
	for (i = 0; i < 64; i++)
		if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0)
			break;
}

/* sock:close([peer_done]), idempotent; also under __gc and __close.
 * peer_done true: the peer's stream is known to have ended (its
 * close_notify or its FIN was read), so there is nothing to drain. */
static int socket_close(lua_State *L)
{
	Socket *so = (Socket *)luatls_checkudata(L, 1, SOCKET_MT);
	if (so->fd >= 0) {
		if (!so->listening && !lua_toboolean(L, 2))
			drain(so->fd);
		close(so->fd);
		so->fd = -1;
	}
	if (so->pending > 0) {
		close(so->pending - 1);
		so->pending = 0;
	}
	return 0;
}

/* __gc and __close: a plain close (__close's second argument is an error). */
static int socket_release(lua_State *L)
{
	lua_settop(L, 1);
	return socket_close(L);
}

static int socket_tostring(lua_State *L)
{
	Socket *so = (Socket *)luatls_checkudata(L, 1, SOCKET_MT);
	if (so->fd < 0)
		lua_pushfstring(L, "luatls.Socket (closed): %p", (void *)so);
	else
		lua_pushfstring(L, "luatls.Socket (fd %d%s): %p", so->fd,
				so->listening ? ", listening" : "", (void *)so);
	return 1;
}

static const luaL_Reg socket_methods[] = {
	{"accept", socket_accept},
	{"close", socket_close},
	{"connected", socket_connected},
	{"fd", socket_fd},
	{"local_address", socket_local_address},
	{"peer_address", socket_peer_address},
	{"recv", socket_recv},
	{"send", socket_send},
	{"shutdown", socket_shutdown},
	{NULL, NULL}
};

static const luaL_Reg socket_meta[] = {
	{"__close", socket_release},
	{"__gc", socket_release},
	{"__tostring", socket_tostring},
	{NULL, NULL}
};

static const luaL_Reg socket_functions[] = {
	{"resolve", socket_resolve},
	{"tcp_connect", socket_connect},
	{"tcp_listen", socket_listen},
	{NULL, NULL}
};

void luatls_open_socket(lua_State *L)
{
	luatls_newclass(L, SOCKET_MT, socket_methods, socket_meta);
	luaL_setfuncs(L, socket_functions, 0);
}
