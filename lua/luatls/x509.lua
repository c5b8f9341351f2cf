-- Certificates as Lua values: load, inspect, pin. The objects come from
-- the C core (luatls.Certificate); this module is their front door.
local core = require "luatls.core"

local M = {}

-- x509.load(pem_or_der) -> Certificate | nil, message, code
function M.load(data)
	if type(data) ~= "string" then
		error("bad argument #1 to 'load' (string expected, got " .. type(data) .. ")", 2)
	end
	return core.certificate(data)
end

-- x509.load_chain(pem) -> { Certificate, ... } | nil, message, code
function M.load_chain(data)
	if type(data) ~= "string" then
		error("bad argument #1 to 'load_chain' (string expected, got " .. type(data) .. ")", 2)
	end
	return core.certificates(data)
end

-- x509.load_file(path) -> { Certificate, ... } | nil, message, code
function M.load_file(path)
	local f, err = io.open(path, "rb")
	if not f then return nil, "cannot read certificate file: " .. err, "ENOENT" end
	local data = f:read("*a")
	f:close()
	return core.certificates(data)
end

return M
