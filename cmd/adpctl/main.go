// Command adpctl is the operator's CLI for the Agent Data Platform.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentdataplatform/adp/internal/adpctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := adpctl.Run(ctx, adpctl.EnvFromOS(), os.Args[1:])
	stop()
	os.Exit(code)
}
