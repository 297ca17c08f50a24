//go:build tools

// Package tools pins Docker Compose, built by scripts/containers/compose.sh with
// `go build github.com/docker/compose/v5/cmd` from this module at the version go.mod
// requires (go.sum holds the hashes of everything it builds from), for machines whose
// Docker has no compose plugin and no registry to fetch one from. A module of our own,
// so that the build is pinned and repeatable like SeaweedFS's (scripts/seaweedfs).
package tools

import _ "github.com/docker/compose/v5/cmd"
