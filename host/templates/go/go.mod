module {{name}}

go {{go_version}}

require github.com/plugwire/plugwire/sdk/go v0.0.0

{{go_replace}}
