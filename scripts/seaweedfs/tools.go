//go:build tools

// Package tools pins the S3 server of the local stack: SeaweedFS, built by
// scripts/stack.sh with `go build github.com/seaweedfs/seaweedfs/weed` from this module,
// at the version go.mod requires (go.sum holds the hashes of everything it builds from).
// A module of our own, because `go install` refuses SeaweedFS's go.mod for its replace
// directive; the same directive is repeated in go.mod.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
