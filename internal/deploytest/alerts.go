package deploytest

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v4"
)

// AlertRule is one alerting rule of a Prometheus rules file.
type AlertRule struct {
	Group       string            `yaml:"-"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string      `yaml:"name"`
		Rules []AlertRule `yaml:"rules"`
	} `yaml:"groups"`
}

// LoadAlertRules reads the alerting rules of a Prometheus rules file
// (recording rules, which have no alert name, are skipped).
func LoadAlertRules(path string) ([]AlertRule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f ruleFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var rules []AlertRule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			r.Group = g.Name
			rules = append(rules, r)
		}
	}
	return rules, nil
}
