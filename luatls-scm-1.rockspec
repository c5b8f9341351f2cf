rockspec_format = "3.0"
package = "luatls"
version = "scm-1"

source = {
  url = "git+https://github.com/luatls/luatls.git",
}

description = {
  summary = "TLS for Lua: a C core over GnuTLS and libev, policy in Lua",
}

dependencies = {
  "lua >= 5.1, < 5.5",
}

external_dependencies = {
  GNUTLS = { header = "gnutls/gnutls.h", library = "gnutls" },
  LIBEV = { header = "ev.h", library = "ev" },
}

build = {
  type = "builtin",
  modules = {
    -- keep in step with src/*.c (the Makefile takes them all)
    ["luatls.core"] = {
      sources = {
        "src/acceptor.c", "src/compat.c", "src/context.c", "src/core.c", "src/crl.c", "src/key.c",
        "src/loop.c", "src/policy.c", "src/resume.c", "src/session.c", "src/socket.c", "src/store.c", "src/x509.c",
        "src/x509_ext.c", "src/x509_gen.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(GNUTLS_INCDIR)", "$(LIBEV_INCDIR)", "include", "src" },
      libdirs = { "$(GNUTLS_LIBDIR)", "$(LIBEV_LIBDIR)" },
      libraries = { "gnutls", "ev" },
    },
    luatls = "lua/luatls/init.lua",
    ["luatls.loop"] = "lua/luatls/loop.lua",
    ["luatls.stream"] = "lua/luatls/stream.lua",
    ["luatls.policy"] = "lua/luatls/policy.lua",
    ["luatls.x509"] = "lua/luatls/x509.lua",
    ["luatls.errors"] = "lua/luatls/errors.lua",
    ["luatls.cache"] = "lua/luatls/cache.lua",
    ["luatls.resumption"] = "lua/luatls/resumption.lua",
  },
}
