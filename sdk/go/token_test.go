package plugwire

import (
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestTokenLineOnStdinAndNothingAfterItIsRead(t *testing.T) {
	r := strings.NewReader("PLUGWIRE_TOKEN abc-DEF_123\nrest")
	token, err := readLaunchToken(env(map[string]string{EnvAuthTokenSource: "stdin"}), r, time.Second)
	if err != nil || token != "abc-DEF_123" {
		t.Fatalf("got %q, %v", token, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("the reader took more than the line: %q left", rest)
	}
}

func TestLegacyEnvToken(t *testing.T) {
	for _, source := range []string{"", "env"} {
		token, err := readLaunchToken(env(map[string]string{EnvAuthTokenSource: source, EnvAuthToken: "t1"}), strings.NewReader(""), time.Second)
		if err != nil || token != "t1" {
			t.Fatalf("source %q: got %q, %v", source, token, err)
		}
	}
}

func TestTokenRefusals(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	cases := []struct {
		env   map[string]string
		stdin io.Reader
		want  string
	}{
		{map[string]string{EnvAuthTokenSource: "env"}, strings.NewReader(""), "did not set PLUGWIRE_AUTH_TOKEN"},
		{map[string]string{EnvAuthTokenSource: "file"}, strings.NewReader(""), "neither 'stdin' nor 'env'"},
		{map[string]string{EnvAuthTokenSource: "stdin"}, strings.NewReader("PLUGWIRE_TOKEN abc"), "stdin closed before"},
		{map[string]string{EnvAuthTokenSource: "stdin"}, strings.NewReader("secret-looking\n"), "does not start with 'PLUGWIRE_TOKEN '"},
		{map[string]string{EnvAuthTokenSource: "stdin"}, strings.NewReader("PLUGWIRE_TOKEN a b\n"), "empty or holds a space"},
		{map[string]string{EnvAuthTokenSource: "stdin"}, strings.NewReader(strings.Repeat("x", 2000)), "over 1024 bytes"},
		{map[string]string{EnvAuthTokenSource: "stdin"}, pr, "within 100 ms"},
	}
	for _, c := range cases {
		_, err := readLaunchToken(env(c.env), c.stdin, 100*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v", c.want, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret-looking") {
			t.Errorf("the error quotes the line: %v", err)
		}
	}
}
