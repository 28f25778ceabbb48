package plugwire

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// The token line the host writes on stdin (PLUGWIRE_AUTH_TOKEN_SOURCE=stdin,
// docs/protocol.md §6): "PLUGWIRE_TOKEN <token>\n".
const (
	TokenLinePrefix   = "PLUGWIRE_TOKEN"
	TokenLineTimeout  = 5 * time.Second
	MaxTokenLineBytes = 1024
)

var tokenValuePattern = regexp.MustCompile(`^[\x21-\x7e]+$`)

// readLaunchToken returns this launch's auth token where
// PLUGWIRE_AUTH_TOKEN_SOURCE says: with "stdin", the first line of stdin,
// read byte by byte so that nothing after it is taken (the caller then
// watches stdin for EOF); with "env" or unset, PLUGWIRE_AUTH_TOKEN (the
// legacy way, which any process of the same user can read in
// /proc/<pid>/environ). Its errors never hold the token.
func readLaunchToken(getenv func(string) string, stdin io.Reader, timeout time.Duration) (string, error) {
	switch source := getenv(EnvAuthTokenSource); source {
	case "", "env":
		token := getenv(EnvAuthToken)
		if token == "" {
			return "", fmt.Errorf("the host did not set %s (and %s is not 'stdin'); this plugin must be started by a plugwire host", EnvAuthToken, EnvAuthTokenSource)
		}
		return token, nil
	case "stdin":
	default:
		return "", fmt.Errorf("%s=%q is neither 'stdin' nor 'env'; the host that started this plugin is broken or newer than this plugin", EnvAuthTokenSource, source)
	}
	type result struct {
		token string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		token, err := readTokenLine(stdin)
		done <- result{token, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.token, r.err
	case <-timer.C:
		return "", fmt.Errorf("no '%s <token>' line arrived on stdin within %d ms (%s=stdin); the host writes it right after it starts the plugin, "+
			"so whatever started this one is not a plugwire host (or is broken)", TokenLinePrefix, timeout.Milliseconds(), EnvAuthTokenSource)
	}
}

func readTokenLine(stdin io.Reader) (string, error) {
	how := fmt.Sprintf("the host writes '%s <token>' there (%s=stdin)", TokenLinePrefix, EnvAuthTokenSource)
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := stdin.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
			if len(line) >= MaxTokenLineBytes {
				return "", fmt.Errorf("the first line on stdin is over %d bytes; %s", MaxTokenLineBytes, how)
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("stdin closed before the host wrote the '%s <token>' line (%s=stdin); this plugin must be started by a plugwire host", TokenLinePrefix, EnvAuthTokenSource)
		}
		if err != nil {
			return "", fmt.Errorf("reading the token line on stdin failed: %v", err)
		}
	}
	prefix := TokenLinePrefix + " "
	if !strings.HasPrefix(string(line), prefix) {
		return "", fmt.Errorf("the first line on stdin (%d bytes) does not start with '%s'; %s", len(line), prefix, how)
	}
	token := string(line[len(prefix):])
	if !tokenValuePattern.MatchString(token) {
		return "", fmt.Errorf("the token on the first line of stdin is empty or holds a space or a control character; %s", how)
	}
	return token, nil
}
