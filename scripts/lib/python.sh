# scripts/lib/python.sh: sourced by scripts/demo.sh, the integration tests and bench/*.sh.
# sg_debian_python DIR: puts Debian's python3 (what scripts/install-deps.sh installs, with
# python3-cryptography) first on PATH through a link in DIR when another python3 comes first.
# A version manager's shim (pyenv) costs 0.4 s per start, which the tests pay thousands of
# times (free ports, JSON, helper servers), and lacks Debian's modules.
sg_debian_python() {
	[ -x /usr/bin/python3 ] || return 0
	[ "$(command -v python3)" = /usr/bin/python3 ] && return 0
	mkdir -p "$1" && ln -sf /usr/bin/python3 "$1/python3" && PATH=$1:$PATH && hash -r
}
