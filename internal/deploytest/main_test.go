package deploytest

import (
	"os"
	"testing"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.RemoveBinaries()
	os.Exit(code)
}
