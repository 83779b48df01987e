module ferry.dev/plugin

go 1.24
