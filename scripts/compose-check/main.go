// compose-check validates docker-compose.yml against the Compose Specification with
// compose-go, the library Docker Compose itself uses, without a Docker engine.
//
//	go run ./scripts/compose-check docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions([]string{os.Args[1]}, cli.WithOsEnv, cli.WithResolvedPaths(true))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s is not a valid Compose file: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("%s: valid, %d services, %d volumes\n", os.Args[1], len(project.Services), len(project.Volumes))
}
