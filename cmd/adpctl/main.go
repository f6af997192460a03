// Command adpctl is the operator's CLI for the Agent Data Platform.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentdataplatform/adp/internal/adpctl"
)

func main() {
	e, err := adpctl.EnvFromOS()
	if err != nil {
		fmt.Fprintf(os.Stderr, "adpctl: configuration: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := adpctl.Run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}
