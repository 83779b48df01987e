module {{name}}

go 1.24

require ferry.dev/plugin v0.0.0

// ferry's Go SDK, copied here by `ferry plugin new`: the plugin builds offline.
replace ferry.dev/plugin => ./ferry-plugin
