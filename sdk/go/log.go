package plugwire

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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

// grpcLogger routes grpc-go's own logging (grpclog) to the plugin's JSON
// log: warnings and errors, each as one line; info is dropped, as grpc-go's
// default severity does.
type grpcLogger struct{ log *slog.Logger }

func (g grpcLogger) emit(level slog.Level, msg string) {
	g.log.Log(context.Background(), level, strings.TrimSpace(msg), "source", "grpc-go")
}

func (grpcLogger) Info(...any)           {}
func (grpcLogger) Infoln(...any)         {}
func (grpcLogger) Infof(string, ...any)  {}
func (g grpcLogger) Warning(args ...any) { g.emit(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) {
	g.emit(slog.LevelWarn, fmt.Sprintln(args...))
}
func (g grpcLogger) Warningf(format string, args ...any) {
	g.emit(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.emit(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.emit(slog.LevelError, fmt.Sprintln(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.emit(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any) {
	g.emit(slog.LevelError, fmt.Sprint(args...))
	os.Exit(1)
}
func (g grpcLogger) Fatalln(args ...any) {
	g.emit(slog.LevelError, fmt.Sprintln(args...))
	os.Exit(1)
}
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.emit(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}
func (grpcLogger) V(int) bool { return false }
