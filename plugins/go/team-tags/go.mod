module team-tags

go 1.24

require ferry.dev/plugin v0.0.0

// ferry's Go SDK, from this repository (a scaffold carries its own copy).
replace ferry.dev/plugin => ../../../sdk/go
