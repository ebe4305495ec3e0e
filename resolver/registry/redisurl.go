package registry

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Reaching Redis: the URL, its secrets, and TLS.
//
// A Redis URL may carry a password (redis://USER:PASSWORD@HOST:PORT/DB),
// and it is typed on command lines and in unit files that end up in logs
// and bug reports, so this package never prints one as given: every error
// or log line that names the URL names RedactURL's form of it, and errors
// of the URL parser (which quote the URL whole) are rewritten.

// redacted replaces a secret in RedactURL's output; the same mark as
// net/url's URL.Redacted.
const redacted = "xxxxx"

// RedactURL returns url with its password replaced by "xxxxx":
// redis://user:pw@host:6379/0 becomes redis://user:xxxxx@host:6379/0, and
// the value of a query parameter whose name says it is a password or a
// secret ("password", "pass", "secret", "auth", …) is replaced too.
// go-redis v9.7 takes the password only from the userinfo and refuses
// unknown query parameters, but the parameters are redacted anyway: the
// URL may be wrong, and it is printed then.
//
// A URL that does not parse, or whose "@" is not where the parser put the
// end of the userinfo (a password holding '/', '?' or '#' unescaped),
// has everything between "://" and its last "@" replaced: a string
// RedactURL cannot read is never printed with what may be a password.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Opaque == "" && u.Scheme != "" &&
		!strings.Contains(u.Host+u.Path+u.RawPath+u.RawQuery+u.Fragment+u.RawFragment, "@") {
		u.RawQuery = redactQuery(u.RawQuery)
		return u.Redacted()
	}
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = redacted + "@" + rest[at+1:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q+1] + redactQuery(rest[q+1:])
	}
	return prefix + rest
}

// redactQuery replaces the values of secret-looking parameters in a raw
// query, keeping everything else as written (order included).
func redactQuery(raw string) string {
	if raw == "" {
		return raw
	}
	params := strings.Split(raw, "&")
	for i, p := range params {
		name, _, hasValue := strings.Cut(p, "=")
		if hasValue && secretParam(name) {
			params[i] = name + "=" + redacted
		}
	}
	return strings.Join(params, "&")
}

// secretParam reports whether a query parameter's name says its value
// is a secret.
func secretParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.ToLower(name)
	for _, s := range []string{"pass", "pwd", "secret", "auth", "token", "key"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// RedisConfig says how to reach the Redis that nodes share presence in.
type RedisConfig struct {
	// URL is redis://[[USER]:PASSWORD@]HOST:PORT/DB, or rediss://… for
	// TLS. The query may set go-redis options (dial_timeout=…).
	URL string
	// CAFile, for rediss:// only, is a PEM file of the certificate
	// authorities that may sign the server's certificate, trusted instead
	// of the system's (as redis-cli --cacert). Empty: the system's roots.
	CAFile string
}

// Check reports what is wrong with c without connecting; its errors name
// the URL redacted (RedactURL).
func (c RedisConfig) Check() error {
	_, err := c.options()
	return err
}

// options returns the go-redis options of c: the URL's, with this
// package's timeouts, and the CA file's pool for TLS.
func (c RedisConfig) options() (*redis.Options, error) {
	shown := RedactURL(c.URL)
	if !strings.HasPrefix(c.URL, "redis://") && !strings.HasPrefix(c.URL, "rediss://") {
		return nil, fmt.Errorf("%q: want redis://[USER:PASSWORD@]HOST:PORT/DB, or rediss://… for TLS", shown)
	}
	opt, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shown, parseError(err))
	}
	if c.CAFile != "" {
		if opt.TLSConfig == nil {
			return nil, fmt.Errorf("CA file %s is for TLS, and %s is not TLS (rediss://)", c.CAFile, shown)
		}
		pool, err := loadCA(c.CAFile)
		if err != nil {
			return nil, err
		}
		opt.TLSConfig.RootCAs = pool
	}
	opt.DialTimeout = redisTimeout
	opt.ReadTimeout = redisTimeout
	opt.WriteTimeout = redisTimeout
	opt.MaxRetries = 1
	return opt, nil
}

// parseError is go-redis's URL error without the URL it quotes: net/url
// errors carry the URL as typed, password included. An escape error
// quotes the bad escape, which may be three characters of the password,
// so it is replaced by a message that quotes nothing.
func parseError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err // go-redis's own: they quote the path or a parameter
	}
	var esc url.EscapeError
	if errors.As(ue.Err, &esc) {
		return errors.New("invalid %-escape (a '%' in a password is written %25)")
	}
	return ue.Err
}

// loadCA reads a PEM file of CA certificates.
func loadCA(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
