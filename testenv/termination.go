// The termination message of a container, as a kubelet reads it
// (pkg/kubelet/kuberuntime: the file at terminationMessagePath, at most 4096
// bytes; with terminationMessagePolicy FallbackToLogsOnError and a failed,
// message-less container, the tail of its log: at most 80 lines and 2048
// bytes). The pod's filesystem is the runner's root dir, where `klt-render run
// --pod` puts the termination log.

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

const (
	maxTerminationMessage = 4096 // kubelet: maxMsgSize
	fallbackLogLines      = 80   // kubelet: kubecontainer.MaxContainerTerminationMessageLogLines
	fallbackLogBytes      = 2048 // kubelet: kubecontainer.MaxContainerTerminationMessageLogLength
	defaultMessagePath    = "/dev/termination-log"
)

func terminationLogPath(root string, c *corev1.Container) string {
	p := c.TerminationMessagePath
	if p == "" {
		p = defaultMessagePath
	}
	return filepath.Join(root, strings.TrimPrefix(p, "/"))
}

// clearTerminationLog removes the previous attempt's message (a restarted
// container starts with an empty file, as a kubelet mounts a fresh one).
func clearTerminationLog(root string, c *corev1.Container) {
	_ = os.Remove(terminationLogPath(root, c))
}

func terminationMessage(root string, c *corev1.Container, exit int32, out outputFiles) string {
	if b, err := os.ReadFile(terminationLogPath(root, c)); err == nil && len(b) > 0 {
		if len(b) > maxTerminationMessage {
			b = b[:maxTerminationMessage]
		}
		return string(b)
	}
	if exit == 0 || c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		return ""
	}
	// The container log is stdout and stderr interleaved; here they are two
	// files: stdout, then stderr (whose last line is the evaluator's summary).
	var log []byte
	for _, f := range []string{out.stdout, out.stderr} {
		if b, err := os.ReadFile(f); err == nil {
			log = append(log, b...)
		}
	}
	return logTail(log)
}

// logTail is the last fallbackLogLines lines of log, then its last
// fallbackLogBytes bytes.
func logTail(log []byte) string {
	log = bytes.TrimRight(log, "\n")
	lines := bytes.Split(log, []byte("\n"))
	if len(lines) > fallbackLogLines {
		lines = lines[len(lines)-fallbackLogLines:]
	}
	tail := bytes.Join(lines, []byte("\n"))
	if len(tail) > fallbackLogBytes {
		tail = tail[len(tail)-fallbackLogBytes:]
	}
	return string(tail)
}
