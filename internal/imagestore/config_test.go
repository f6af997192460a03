package imagestore

import (
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

func TestConfigDocumented(t *testing.T) {
	t.Parallel()
	testsupport.CheckEnvDocumented(t, &Config{}, "", "Image store (the sandbox runtime and `adpctl env`):")
	f, _ := reflect.TypeFor[Config]().FieldByName("MaxGB")
	if def := f.Tag.Get("envDefault"); def != strconv.Itoa(DefaultMaxGB) {
		t.Errorf("SANDBOX_IMAGE_STORE_GB defaults to %s, DefaultMaxGB is %d", def, DefaultMaxGB)
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	t.Parallel()
	var cfg Config
	err := env.ParseWithOptions(&cfg, env.Options{Environment: map[string]string{
		"SANDBOX_IMAGE_STORE": "/var/lib/adp/images", "SANDBOX_IMAGE_STORE_GB": "1.5",
		"SANDBOX_IMAGE_ARCHIVES": "/archives", "SANDBOX_INSECURE_REGISTRIES": "registry:5000,10.0.0.2:5000",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != "/var/lib/adp/images" || cfg.MaxGB != 1.5 || cfg.ArchiveDir != "/archives" ||
		!slices.Equal(cfg.InsecureRegistries, []string{"registry:5000", "10.0.0.2:5000"}) || cfg.Keychain != nil || cfg.Log != nil {
		t.Errorf("config = %+v", cfg)
	}
}
