package plugwire

import (
	"io"
	"log/slog"
	"strings"
)

// newLogger writes one JSON object per line with "level" in lower case and
// "time" in Unix milliseconds, as the host expects (docs/protocol.md §5).
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Int64(slog.TimeKey, a.Value.Time().UnixMilli())
			case slog.LevelKey:
				level := strings.ToLower(a.Value.String())
				if level == "warning" {
					level = "warn"
				}
				return slog.String(slog.LevelKey, level)
			}
			return a
		},
	}))
}
