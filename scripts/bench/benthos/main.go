// Benthos v4.27.0 (MIT; the last release before it became Redpanda Connect), built with
// just the components the benchmark uses: kafka_franz in, aws_s3 out, the mapping and
// archive/compress processors, Prometheus metrics. `scripts/bench.sh` builds it once into
// the cache and runs it beside the consumers (issue #13).
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/aws"
	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/kafka"
	_ "github.com/benthosdev/benthos/v4/public/components/prometheus"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background())
}
