package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/botq/botq/api"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
)

// Config is botq's whole configuration. It is resolved in this order:
// DefaultConfig, then the YAML file, then the environment (DATABASE_URL and
// BOTQ_<SECTION>_<KEY>), then Validate, which reports every problem at once.
// Secrets (the database password, the encryption key, API keys, app tokens)
// come only from the environment or from files and are never printed: their
// fields carry `yaml:"-"`. config.example.yaml documents every key.
type Config struct {
	Database   DatabaseConfig   `yaml:"database"`
	Log        LogConfig        `yaml:"log"`
	HTTP       HTTPConfig       `yaml:"http"`
	Roles      RolesConfig      `yaml:"roles"`
	River      RiverConfig      `yaml:"river"`
	Khoros     KhorosConfig     `yaml:"khoros"`
	Encryption EncryptionConfig `yaml:"encryption"`
	Reconciler ReconcilerConfig `yaml:"reconciler"`
	Retention  RetentionConfig  `yaml:"retention"`
	// Kinds overrides per action kind; absent kinds use the defaults.
	Kinds map[string]KindConfig `yaml:"kinds"`
	// Apps are the Bot v3 apps botq works for, created or updated at start.
	Apps []AppConfig `yaml:"apps"`
}

// DatabaseConfig says where Postgres is.
type DatabaseConfig struct {
	// URL comes from DATABASE_URL or URLFile; a URL in the YAML file must not
	// hold a password.
	URL      string `yaml:"url"`
	URLFile  string `yaml:"url_file"`
	Schema   string `yaml:"schema"`
	MaxConns int32  `yaml:"max_conns"`
	// AutoMigrate makes `botq serve` migrate the schema at start (as the
	// login user, not Role).
	AutoMigrate bool `yaml:"auto_migrate"`
	// Role is the role botq acts as once connected (as SET ROLE), so that
	// the schema's owner, which migrates, is not the role botq runs as:
	// botq_runtime may not rewrite audit history. "" runs as the login user.
	Role string `yaml:"role"`
}

// LogConfig shapes logs.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json or console
}

// HTTPConfig configures the HTTP server (API, River UI, metrics, health).
type HTTPConfig struct {
	Listen          string        `yaml:"listen"`
	MetricsPublic   bool          `yaml:"metrics_public"`
	APIKeysFile     string        `yaml:"api_keys_file"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadHeaderTimeout bounds the reading of a request's headers, and
	// ReadTimeout of the whole request, body included: a client that sends
	// part of a body and stalls is cut off. Neither bounds the response, which
	// may stream for long (the export of request records).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	// TrustedOrigins are browser origins ("https://host[:port]") whose
	// unsafe requests are accepted although they are not the server's own:
	// a page of another origin, or the public origin of a proxy that changes
	// the Host header, for browsers that send no Sec-Fetch-Site (plain HTTP).
	TrustedOrigins []string `yaml:"trusted_origins"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ to operator
	// keys (off by default).
	Pprof bool `yaml:"pprof"`
	// APIKeys come from BOTQ_API_KEYS or APIKeysFile: lines of
	// "name:role:key" (role enqueuer, auditor or operator).
	APIKeys string `yaml:"-"`
}

// RolesConfig switches the parts of `botq serve` on and off, for scaling out.
type RolesConfig struct {
	API        bool `yaml:"api"`
	Workers    bool `yaml:"workers"`
	Reconciler bool `yaml:"reconciler"`
}

// QueueConfig is one River queue this process works.
type QueueConfig struct {
	MaxWorkers int `yaml:"max_workers"`
}

// RiverConfig tunes River.
type RiverConfig struct {
	Queues            map[string]QueueConfig `yaml:"queues"`
	FetchCooldown     time.Duration          `yaml:"fetch_cooldown"`
	FetchPollInterval time.Duration          `yaml:"fetch_poll_interval"`
	JobTimeout        time.Duration          `yaml:"job_timeout"`
	RescueStuckAfter  time.Duration          `yaml:"rescue_stuck_after"`
	// CompletedRetention is how long River keeps finished jobs; botq's own
	// tables keep the audit record.
	CompletedRetention time.Duration `yaml:"completed_retention"`
	// MaintenanceRetention is how long the maintenance queue's completed
	// jobs are kept (0: as long as CompletedRetention). The reconciler runs
	// every couple of seconds, and its runs kept a day would bury the action
	// jobs in River UI.
	MaintenanceRetention time.Duration `yaml:"maintenance_retention"`
	// PollOnly runs River without LISTEN: it acts on no NOTIFY, which any
	// role that can connect may send (pause a queue, cancel a running job,
	// make the leader resign), and finds work by polling every
	// FetchPollInterval instead.
	PollOnly bool `yaml:"poll_only"`
}

// KhorosConfig applies to every Bot v3 call.
type KhorosConfig struct {
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// CareBaseURL is the Care v2 instance URL used to bootstrap a first token
	// (https://<instance>.response.lithium.com).
	CareBaseURL string `yaml:"care_base_url"`
}

// EncryptionConfig names the key that encrypts tokens at rest.
type EncryptionConfig struct {
	KeyFile string `yaml:"key_file"`
	// Key (base64 or hex, 32 bytes) comes from BOTQ_ENCRYPTION_KEY or KeyFile.
	Key string `yaml:"-"`
}

// ReconcilerConfig tunes the reconciler.
type ReconcilerConfig struct {
	Interval           time.Duration `yaml:"interval"`
	SingleGetMax       int           `yaml:"single_get_max"`
	ListMaxWait        time.Duration `yaml:"list_max_wait"`
	MaxWindow          time.Duration `yaml:"max_window"`
	AmbiguousGrace     time.Duration `yaml:"ambiguous_grace"`
	MaxReleases        int           `yaml:"max_releases"`
	RecordKhorosOrigin bool          `yaml:"record_khoros_origin"`
	HealthInterval     time.Duration `yaml:"health_interval"`
	TokenRefreshBefore time.Duration `yaml:"token_refresh_before"`
}

// RetentionConfig bounds how long audit rows are kept.
type RetentionConfig struct {
	Period    time.Duration `yaml:"period"`
	Interval  time.Duration `yaml:"interval"`
	BatchSize int           `yaml:"batch_size"`
}

// KindConfig overrides one action kind's River settings and retry schedule.
type KindConfig struct {
	MaxAttempts int           `yaml:"max_attempts"`
	Queue       string        `yaml:"queue"`
	Priority    int           `yaml:"priority"`
	RetryBase   time.Duration `yaml:"retry_base"`
	RetryMax    time.Duration `yaml:"retry_max"`
}

// AppConfig is one Bot v3 app.
type AppConfig struct {
	ID            string  `yaml:"id"`
	Region        string  `yaml:"region"`
	BaseURL       string  `yaml:"base_url"`
	CompanyKey    string  `yaml:"company_key"`
	RateLimit     float64 `yaml:"rate_limit"`
	RateBurst     int     `yaml:"rate_burst"`
	Concurrency   int     `yaml:"concurrency"`
	LaneOnFailure string  `yaml:"lane_on_failure"`
	TokenFile     string  `yaml:"token_file"`
	TokenEnv      string  `yaml:"token_env"`
}

// actionKinds are the kinds botq executes (the rows of kind_config).
var actionKinds = []string{
	"respond", "form", "note", "control", "priority", "tag", "tag_remove", "workqueue", "resolve",
	"author_attributes", "author_update", "registration_create", "registration_update", "registration_delete",
	"mode", "token_refresh", "token_revoke",
}

// DefaultConfig returns the configuration botq runs with when nothing is
// set: local Postgres, everything in one process.
func DefaultConfig() Config {
	return Config{
		Database: DatabaseConfig{
			URL:      "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			Schema:   migrations.DefaultSchema,
			MaxConns: 20,
			Role:     store.DBRoleRuntime,
		},
		Log: LogConfig{Level: "info", Format: "json"},
		HTTP: HTTPConfig{
			Listen: "127.0.0.1:8080", ShutdownTimeout: 10 * time.Second,
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		},
		Roles: RolesConfig{API: true, Workers: true, Reconciler: true},
		River: RiverConfig{
			Queues:               map[string]QueueConfig{"botq": {MaxWorkers: 100}, "botq_maintenance": {MaxWorkers: 4}},
			FetchCooldown:        10 * time.Millisecond,
			FetchPollInterval:    100 * time.Millisecond,
			JobTimeout:           time.Minute,
			RescueStuckAfter:     10 * time.Minute,
			CompletedRetention:   24 * time.Hour,
			MaintenanceRetention: time.Minute,
		},
		Khoros: KhorosConfig{HTTPTimeout: 20 * time.Second},
		Reconciler: ReconcilerConfig{
			Interval:           2 * time.Second,
			SingleGetMax:       2,
			ListMaxWait:        30 * time.Second,
			MaxWindow:          31 * 24 * time.Hour,
			AmbiguousGrace:     2 * time.Minute,
			MaxReleases:        reconciler.DefaultMaxReleases,
			HealthInterval:     time.Minute,
			TokenRefreshBefore: 7 * 24 * time.Hour,
		},
		Retention: RetentionConfig{Period: 400 * 24 * time.Hour, Interval: time.Hour, BatchSize: 1000},
	}
}

// ConfigError lists every problem found in a configuration.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0]
	}
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// LoadConfig resolves the configuration from path ("" for none) and env (a
// lookup such as os.LookupEnv).
func LoadConfig(path string, env func(string) (string, bool)) (Config, error) {
	cfg := DefaultConfig()
	var problems []string
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, &ConfigError{Problems: []string{fmt.Sprintf("read config file: %v", err)}}
		}
		problems = append(problems, decodeYAML(path, data, &cfg)...)
		if len(problems) > 0 {
			return cfg, &ConfigError{Problems: problems}
		}
	}
	problems = append(problems, applyEnv(&cfg, env)...)
	problems = append(problems, cfg.readSecretFiles(path != "", env)...)
	problems = append(problems, cfg.Validate()...)
	if len(problems) > 0 {
		return cfg, &ConfigError{Problems: problems}
	}
	return cfg, nil
}

var yamlLineRe = regexp.MustCompile(`line (\d+): `)

// decodeYAML decodes data strictly (unknown keys are errors) and names the
// key and line of each problem, in the configuration's words.
func decodeYAML(path string, data []byte, cfg *Config) []string {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return []string{syntaxProblem(path, data, err)}
	}
	if len(root.Content) == 0 {
		return nil // an empty file keeps the defaults
	}
	keys := map[int]string{}
	indexKeys(root.Content[0], "", keys)
	data = dayDurations(data, root.Content[0], reflect.TypeOf(Config{}))
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{syntaxProblem(path, data, err)}
	}
	var problems []string
	for _, msg := range te.Errors {
		m := yamlLineRe.FindStringSubmatch(msg)
		if m == nil {
			problems = append(problems, fmt.Sprintf("%s: %s", path, msg))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		problems = append(problems, typeProblem(path, line, keys[line], yamlLineRe.ReplaceAllString(msg, "")))
	}
	return problems
}

// indexKeys records the dotted key path found on each line.
func indexKeys(n *yaml.Node, prefix string, keys map[int]string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			keys[k.Line] = path
			if v.Line != k.Line || v.Kind == yaml.ScalarNode {
				keys[v.Line] = path
			}
			indexKeys(v, path, keys)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			path := fmt.Sprintf("%s[%d]", prefix, i)
			if _, ok := keys[c.Line]; !ok {
				keys[c.Line] = path
			}
			indexKeys(c, path, keys)
		}
	}
}

// envName is the environment variable that overrides a key.
func envName(path []string) string {
	return "BOTQ_" + strings.ToUpper(strings.Join(path, "_"))
}

// EnvNames lists the environment variables that configure botq:
// DATABASE_URL and BOTQ_<SECTION>_<KEY> for every scalar key.
func EnvNames() []string {
	names := []string{"DATABASE_URL"}
	walkScalars(reflect.ValueOf(&Config{}).Elem(), nil, func(path []string, _ reflect.Value) {
		names = append(names, envName(path))
	})
	return names
}

// applyEnv overrides scalar keys from BOTQ_<SECTION>_<KEY> variables (maps
// and lists are configured in the file only) and reads the secrets.
func applyEnv(cfg *Config, env func(string) (string, bool)) []string {
	var problems []string
	if v, ok := env("DATABASE_URL"); ok && v != "" {
		cfg.Database.URL = v
	}
	walkScalars(reflect.ValueOf(cfg).Elem(), nil, func(path []string, f reflect.Value) {
		name := envName(path)
		v, ok := env(name)
		if !ok {
			return
		}
		if err := setScalar(f, v); err != nil {
			problems = append(problems, fmt.Sprintf("environment %s: %v", name, err))
		}
	})
	if v, ok := env("BOTQ_ENCRYPTION_KEY"); ok {
		cfg.Encryption.Key = v
	}
	if v, ok := env("BOTQ_API_KEYS"); ok {
		cfg.HTTP.APIKeys = v
	}
	return problems
}

// walkScalars calls fn for every scalar field reachable through structs.
func walkScalars(v reflect.Value, path []string, fn func([]string, reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if tag == "-" || tag == "" {
			continue
		}
		f := v.Field(i)
		p := append(append([]string(nil), path...), tag)
		switch f.Kind() {
		case reflect.Struct:
			walkScalars(f, p, fn)
		case reflect.Map, reflect.Slice:
		default:
			fn(p, f)
		}
	}
}

func setScalar(f reflect.Value, s string) error {
	if f.Type() == durationType {
		d, err := api.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// readSecretFiles reads secrets configured as files. A password in the
// config file is refused unless the environment (env) gives the URL.
func (c *Config) readSecretFiles(fromFile bool, env func(string) (string, bool)) []string {
	var problems []string
	read := func(key, path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	if c.Database.URLFile != "" {
		c.Database.URL = read("database.url_file", c.Database.URLFile)
	} else if fromFile && urlHasPassword(c.Database.URL) && !envSet(env, "DATABASE_URL") && !envSet(env, "BOTQ_DATABASE_URL") {
		problems = append(problems, "database.url: holds a password; secrets come from the environment (DATABASE_URL) or database.url_file, not the config file")
	}
	if c.Encryption.KeyFile != "" && c.Encryption.Key == "" {
		c.Encryption.Key = read("encryption.key_file", c.Encryption.KeyFile)
	}
	if c.HTTP.APIKeysFile != "" && c.HTTP.APIKeys == "" {
		c.HTTP.APIKeys = read("http.api_keys_file", c.HTTP.APIKeysFile)
	}
	return problems
}

// envSet reports whether env gives name a value other than "".
func envSet(env func(string) (string, bool), name string) bool {
	v, ok := env(name)
	return ok && v != ""
}

func urlHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err == nil && u.User != nil {
		_, ok := u.User.Password()
		return ok
	}
	return strings.Contains(s, "password=")
}

var (
	appIDRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
	queueRe   = regexp.MustCompile(`^[a-z0-9]+([_|-]?[a-z0-9]+)*$`)
	logLevels = []string{"trace", "debug", "info", "warn", "error"}
)

// problems collects what is wrong with a configuration, each naming its
// key.
type problems []string

func (p *problems) bad(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

func (p *problems) positive(key string, d time.Duration) {
	if d <= 0 {
		p.bad(key, "must be a positive duration, not %s", d)
	}
}

// Validate returns every problem with the configuration, each naming its key.
func (c *Config) Validate() []string {
	var p problems
	c.validateProcess(&p)
	c.validateRiver(&p)
	c.validateKhoros(&p)
	c.validateReconciler(&p)
	c.validateSecrets(&p)
	c.validateKinds(&p)
	return append(p, c.ValidateApps()...)
}

// validateProcess checks the database, log, http and roles sections.
func (c *Config) validateProcess(p *problems) {
	if c.Database.URL == "" {
		p.bad("database.url", "is required (set DATABASE_URL)")
	} else if _, err := url.Parse(c.Database.URL); err != nil && !strings.Contains(c.Database.URL, "=") {
		p.bad("database.url", "is not a postgres:// URL or key=value connection string")
	}
	if err := migrations.ValidateSchema(c.Database.Schema); err != nil {
		p.bad("database.schema", "%v", err)
	}
	if c.Database.MaxConns < 2 {
		p.bad("database.max_conns", "must be at least 2, not %d", c.Database.MaxConns)
	}
	if !contains(logLevels, c.Log.Level) {
		p.bad("log.level", "must be one of %s, not %q", strings.Join(logLevels, ", "), c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		p.bad("log.format", "must be json or console, not %q", c.Log.Format)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		p.bad("http.listen", "must be host:port, not %q", c.HTTP.Listen)
	}
	p.positive("http.shutdown_timeout", c.HTTP.ShutdownTimeout)
	c.validateHTTPReads(p)
	if !c.Roles.API && !c.Roles.Workers && !c.Roles.Reconciler {
		p.bad("roles", "at least one of api, workers, reconciler must be on")
	}
}

// validateHTTPReads checks the request read timeouts and the trusted
// origins.
func (c *Config) validateHTTPReads(p *problems) {
	p.positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	p.positive("http.read_timeout", c.HTTP.ReadTimeout)
	if c.HTTP.ReadTimeout > 0 && c.HTTP.ReadTimeout < c.HTTP.ReadHeaderTimeout {
		p.bad("http.read_timeout", "must be at least http.read_header_timeout (%s): it bounds the headers and the body together", c.HTTP.ReadHeaderTimeout)
	}
	for i, o := range c.HTTP.TrustedOrigins {
		if err := api.CheckOrigin(o); err != nil {
			p.bad(fmt.Sprintf("http.trusted_origins[%d]", i), "%v", err)
		}
	}
}

// validateRiver checks the river section.
func (c *Config) validateRiver(p *problems) {
	queueNames := make([]string, 0, len(c.River.Queues))
	for name := range c.River.Queues {
		queueNames = append(queueNames, name)
	}
	sort.Strings(queueNames)
	for _, name := range queueNames {
		q := c.River.Queues[name]
		if !queueRe.MatchString(name) {
			p.bad("river.queues."+name, "queue names are lower-case letters and digits, optionally joined by _ - or |")
		}
		if q.MaxWorkers < 1 || q.MaxWorkers > 10000 {
			p.bad("river.queues."+name+".max_workers", "must be from 1 to 10000, not %d", q.MaxWorkers)
		}
	}
	if _, ok := c.River.Queues["botq_maintenance"]; !ok {
		p.bad("river.queues", "must include botq_maintenance (the reconciler's queue)")
	}
	p.positive("river.fetch_cooldown", c.River.FetchCooldown)
	p.positive("river.fetch_poll_interval", c.River.FetchPollInterval)
	p.positive("river.job_timeout", c.River.JobTimeout)
	if c.River.RescueStuckAfter <= c.River.JobTimeout {
		p.bad("river.rescue_stuck_after", "must be longer than river.job_timeout (%s)", c.River.JobTimeout)
	}
	p.positive("river.completed_retention", c.River.CompletedRetention)
	if c.River.MaintenanceRetention < 0 {
		p.bad("river.maintenance_retention", "must not be negative (0 keeps them for river.completed_retention)")
	}
}

// validateKhoros checks the khoros section.
func (c *Config) validateKhoros(p *problems) {
	p.positive("khoros.http_timeout", c.Khoros.HTTPTimeout)
	if c.Khoros.HTTPTimeout >= c.River.JobTimeout {
		p.bad("khoros.http_timeout", "must be shorter than river.job_timeout (%s), so a call ends before its job does", c.River.JobTimeout)
	}
	if c.Khoros.CareBaseURL != "" {
		if err := checkBaseURL(c.Khoros.CareBaseURL); err != nil {
			p.bad("khoros.care_base_url", "%v", err)
		}
	}
}

// validateReconciler checks the reconciler and retention sections.
func (c *Config) validateReconciler(p *problems) {
	r := c.Reconciler
	p.positive("reconciler.interval", r.Interval)
	if r.SingleGetMax < 0 {
		p.bad("reconciler.single_get_max", "must not be negative")
	}
	p.positive("reconciler.list_max_wait", r.ListMaxWait)
	if r.MaxWindow <= 0 || r.MaxWindow > 31*24*time.Hour {
		p.bad("reconciler.max_window", "must be positive and at most 31d (Bot v3 keeps 31 days), not %s", r.MaxWindow)
	}
	p.positive("reconciler.ambiguous_grace", r.AmbiguousGrace)
	if r.MaxReleases < 1 || r.MaxReleases > 100 {
		p.bad("reconciler.max_releases", "must be between 1 and 100")
	}
	if r.AmbiguousGrace > 0 && r.AmbiguousGrace < c.Khoros.HTTPTimeout {
		p.bad("reconciler.ambiguous_grace", "must be at least khoros.http_timeout (%s): the record of a send without an answer can appear until its call times out, and one released sooner could reach the customer twice", c.Khoros.HTTPTimeout)
	}
	p.positive("reconciler.health_interval", r.HealthInterval)
	p.positive("reconciler.token_refresh_before", r.TokenRefreshBefore)
	p.positive("retention.period", c.Retention.Period)
	p.positive("retention.interval", c.Retention.Interval)
	if c.Retention.BatchSize < 1 {
		p.bad("retention.batch_size", "must be at least 1")
	}
}

// validateSecrets checks the encryption key and the API keys.
func (c *Config) validateSecrets(p *problems) {
	if c.Encryption.Key != "" {
		if _, err := ParseEncryptionKey(c.Encryption.Key); err != nil {
			p.bad("encryption.key", "%v", err)
		}
	}
	if c.HTTP.APIKeys != "" {
		if _, err := ParseAPIKeys(c.HTTP.APIKeys); err != nil {
			p.bad("http.api_keys", "%v", err)
		}
	}
}

// validateKinds checks the kinds section.
func (c *Config) validateKinds(p *problems) {
	kinds := make([]string, 0, len(c.Kinds))
	for k := range c.Kinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		kc := c.Kinds[kind]
		key := "kinds." + kind
		if !contains(actionKinds, kind) {
			p.bad(key, "is not an action kind (one of %s)", strings.Join(actionKinds, ", "))
			continue
		}
		if kc.MaxAttempts < 0 || kc.MaxAttempts > 32767 {
			p.bad(key+".max_attempts", "must be from 1 to 32767")
		}
		if kc.Queue != "" {
			if _, ok := c.River.Queues[kc.Queue]; !ok {
				p.bad(key+".queue", "names queue %q, which is not in river.queues", kc.Queue)
			}
		}
		if kc.Priority < 0 || kc.Priority > 4 {
			p.bad(key+".priority", "must be from 1 to 4")
		}
		if kc.RetryBase < 0 || kc.RetryMax < 0 || (kc.RetryMax > 0 && kc.RetryBase > kc.RetryMax) {
			p.bad(key+".retry_base", "must be positive and not above retry_max")
		}
	}
}

// ValidateApps checks the apps section; `botq app set` checks its flags
// with it too.
func (c *Config) ValidateApps() []string {
	var p problems
	seen := map[string]bool{}
	for i, a := range c.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		if !appIDRe.MatchString(a.ID) {
			p.bad(key+".id", "must be a Bot v3 appId (letters, digits, . _ : @ -), not %q", a.ID)
		} else if seen[a.ID] {
			p.bad(key+".id", "%q is listed twice", a.ID)
		}
		seen[a.ID] = true
		a.validate(&p, key)
	}
	return p
}

// validate checks one app of the apps section, named key.
func (a AppConfig) validate(p *problems, key string) {
	region := strings.ToUpper(a.Region)
	switch {
	case a.BaseURL != "" && region != "" && region != "CUSTOM":
		p.bad(key+".base_url", "is for region CUSTOM; region %s has its own gateway", a.Region)
	case a.BaseURL != "":
		if err := checkBaseURL(a.BaseURL); err != nil {
			p.bad(key+".base_url", "%v", err)
		}
	case region == "CUSTOM":
		p.bad(key+".base_url", "is required for region CUSTOM")
	case region != "" && region != "US" && region != "EMEA" && region != "APAC":
		p.bad(key+".region", "must be US, EMEA, APAC or CUSTOM, not %q", a.Region)
	}
	if a.RateLimit < 0 {
		p.bad(key+".rate_limit", "must not be negative")
	}
	if a.RateBurst < 0 {
		p.bad(key+".rate_burst", "must not be negative")
	}
	if a.Concurrency < 0 {
		p.bad(key+".concurrency", "must not be negative")
	}
	if a.LaneOnFailure != "" && a.LaneOnFailure != "continue" && a.LaneOnFailure != "block" {
		p.bad(key+".lane_on_failure", "must be continue or block, not %q", a.LaneOnFailure)
	}
	if a.TokenFile != "" && a.TokenEnv != "" {
		p.bad(key, "set token_file or token_env, not both")
	}
}

// checkBaseURL refuses a Khoros base URL that would send tokens in clear
// text: https, or http to a loopback address (the simulator).
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q is plain http to a non-loopback host; tokens would travel in clear text (use https)", s)
	default:
		return fmt.Errorf("%q must be https (or http to a loopback address)", s)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Dump writes the resolved configuration as YAML. Secret fields are tagged
// `yaml:"-"` and never appear; the database URL's password is masked.
func (c Config) Dump() ([]byte, error) {
	c.Database.URL = redactURL(c.Database.URL)
	return yaml.Marshal(c)
}

// redactURL masks the password of a connection URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if strings.Contains(s, "password=") {
			return regexp.MustCompile(`password=\S+`).ReplaceAllString(s, "password=xxxxx")
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
