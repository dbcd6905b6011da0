// The CI's own tools, pinned with checksums in a module of their own so that
// they never enter the toolkit's dependency graph. Building from here needs
// no proxy lookup when the modules are cached (go install pkg@version always
// asks the proxy which path prefix is the module, and fails offline).
module ci-tools

go 1.26.0

tool honnef.co/go/tools/cmd/staticcheck

require (
	github.com/BurntSushi/toml v1.4.1-0.20240526193622-a339e1f7089c // indirect
	golang.org/x/exp/typeparams v0.0.0-20231108232855-2478ac86f678 // indirect
	golang.org/x/mod v0.41.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/tools v0.51.0 // indirect
	honnef.co/go/tools v0.8.2 // indirect
)
