package testsupport

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// CheckEnvDocumented checks a binary's config struct against the tables of
// docs/configuration.md: every variable of cfg (env tags, embedded and
// nested structs included) is in one of the tables that follow the lines
// named by sections ("Dispatcher:", "Both runtimes:"...), every variable of
// those tables is in cfg, and a variable with an envDefault tag is
// documented with exactly that default. METRICS_ADDR, whose default is the
// binary's own, must list metricsAddr.
func CheckEnvDocumented(t testing.TB, cfg any, metricsAddr string, sections ...string) {
	t.Helper()
	root, ok := repoRoot()
	if !ok {
		t.Fatal("repository root not found")
	}
	readme, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // variable → default cell
	for _, s := range sections {
		rows := envTable(string(readme), s)
		if len(rows) == 0 {
			t.Fatalf("docs/configuration.md: no table after %q", s)
		}
		for k, v := range rows {
			documented[k] = v
		}
	}
	vars := envTags(reflect.TypeOf(cfg))
	for name, def := range vars {
		cell, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s is read but not documented under %q", name, sections)
		case name == "METRICS_ADDR":
			if !strings.Contains(cell, "`"+metricsAddr+"`") {
				t.Errorf("METRICS_ADDR defaults to %s, docs/configuration.md says %s", metricsAddr, cell)
			}
		case def != nil && cell != "`"+*def+"`":
			t.Errorf("%s defaults to %q, docs/configuration.md says %s", name, *def, cell)
		}
	}
	for name := range documented {
		if _, ok := vars[name]; !ok {
			t.Errorf("docs/configuration.md documents %s under %q, which the binary does not read", name, sections)
		}
	}
}

// envTable returns the rows (variable → default cell) of the first table
// after the line heading. A row naming several variables ("`A`, `B` |
// `1`, `2`") gives one entry per variable, each with its own default when
// the counts match.
func envTable(readme, heading string) map[string]string {
	rows := map[string]string{}
	lines := strings.Split(readme, "\n")
	i := 0
	for i < len(lines) && strings.TrimSpace(lines[i]) != heading {
		i++
	}
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "|"); i++ {
	}
	for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		cells := strings.Split(lines[i], "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue // header or separator
		}
		names := strings.Split(strings.TrimSpace(cells[1]), ", ")
		def := strings.TrimSpace(cells[2])
		defs := strings.Split(def, ", ")
		for j, n := range names {
			d := def
			if len(defs) == len(names) {
				d = defs[j]
			}
			rows[strings.Trim(n, "`")] = d
		}
	}
	return rows
}

// envTags returns the env variables of struct type t (or pointer to it),
// each with its envDefault tag or nil.
func envTags(t reflect.Type) map[string]*string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	vars := map[string]*string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, ok := f.Tag.Lookup("env")
		if !ok {
			if f.Type.Kind() == reflect.Struct {
				for k, v := range envTags(f.Type) {
					vars[k] = v
				}
			}
			continue
		}
		name, _, _ = strings.Cut(name, ",")
		if def, ok := f.Tag.Lookup("envDefault"); ok {
			vars[name] = &def
		} else {
			vars[name] = nil
		}
	}
	return vars
}
