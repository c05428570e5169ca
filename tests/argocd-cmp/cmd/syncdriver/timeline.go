package main

// The timeline: one JSON object per line on stdout, fields in a fixed order (time, event,
// kind, namespace, name, wave, then the event's own fields in the order they were given), so
// that two runs of the same scenario differ only in their times.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const annotationSyncWave = "argocd.argoproj.io/sync-wave"

// field is one extra field of an event; a slice of them keeps their order.
type field struct {
	key   string
	value any
}

func f(key string, value any) field { return field{key, value} }

type timeline struct {
	mu    sync.Mutex
	out   io.Writer
	start time.Time
}

func newTimeline(out io.Writer, start time.Time) *timeline {
	return &timeline{out: out, start: start}
}

// subject names the object an event is about; wave is nil when it has none.
type subject struct {
	kind, namespace, name string
	wave                  *int64
}

func subjectOf(un *unstructured.Unstructured) subject {
	return subject{kind: un.GetKind(), namespace: un.GetNamespace(), name: un.GetName(), wave: waveOf(un)}
}

// waveOf reads the sync wave as gitops-engine does (strconv of the annotation; absent = 0).
func waveOf(un *unstructured.Unstructured) *int64 {
	w := int64(0)
	if s, ok := un.GetAnnotations()[annotationSyncWave]; ok {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			w = v
		}
	}
	return &w
}

// emit writes one line stamped with the current time. The stamp is taken under the lock,
// so lines are in time order.
func (t *timeline) emit(event string, s subject, extra ...field) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"time":%.3f,"event":%s`, time.Since(t.start).Seconds(), js(event))
	fmt.Fprintf(&b, `,"kind":%s,"namespace":%s,"name":%s,"wave":`, js(s.kind), js(s.namespace), js(s.name))
	if s.wave == nil {
		b.WriteString("null")
	} else {
		b.WriteString(strconv.FormatInt(*s.wave, 10))
	}
	for _, x := range extra {
		fmt.Fprintf(&b, ",%s:%s", js(x.key), js(x.value))
	}
	b.WriteString("}\n")
	_, _ = t.out.Write(b.Bytes())
}

func js(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return `"<unencodable>"`
	}
	return string(raw)
}
