package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
)

// Dashboard is the part of a Grafana dashboard JSON model the tests inspect.
type Dashboard struct {
	UID           string          `json:"uid"`
	Title         string          `json:"title"`
	Refresh       string          `json:"refresh"`
	SchemaVersion int             `json:"schemaVersion"`
	Time          DashboardTime   `json:"time"`
	Templating    Templating      `json:"templating"`
	Panels        []Panel         `json:"panels"`
	Inputs        json.RawMessage `json:"__inputs,omitempty"`
}

// DashboardTime is the default time range.
type DashboardTime struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Templating holds the dashboard's variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a dashboard variable.
type Variable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query string `json:"query"`
}

// DatasourceRef points a panel or query at a datasource.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a dashboard panel; rows nest panels.
type Panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *DatasourceRef `json:"datasource"`
	Targets    []Target       `json:"targets"`
	Panels     []Panel        `json:"panels"`
	GridPos    GridPos        `json:"gridPos"`
}

// GridPos is a panel's place on the grid (24 columns wide).
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Instant      bool           `json:"instant"`
	Datasource   *DatasourceRef `json:"datasource"`
}

// PanelExpr is one PromQL expression of a dashboard and where it is.
type PanelExpr struct {
	Panel string // panel title
	RefID string
	Expr  string
	// Instant is true for queries Grafana runs as instant queries (stat
	// panels); the others are range queries.
	Instant bool
}

// LoadDashboard reads a dashboard JSON file.
func LoadDashboard(path string) (*Dashboard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// AllPanels returns the dashboard's panels, rows flattened.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Exprs returns every query expression of the dashboard, in panel order.
// The repository's dashboard uses no Grafana macros ($__rate_interval, ...),
// so each expression can be sent to Prometheus's HTTP API as it is.
func (d *Dashboard) Exprs() []PanelExpr {
	var out []PanelExpr
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, PanelExpr{Panel: p.Title, RefID: t.RefID, Expr: t.Expr, Instant: t.Instant})
		}
	}
	return out
}
