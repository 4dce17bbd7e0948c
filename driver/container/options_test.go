package container

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

func TestDecodeOptionsDefaults(t *testing.T) {
	for _, raw := range []string{"", "null", "{}", "  "} {
		o, err := DecodeOptions(json.RawMessage(raw))
		if err != nil {
			t.Fatalf("DecodeOptions(%q): %v", raw, err)
		}
		if o.Image != DefaultImage || o.Python != DefaultPython || o.ShmSize != DefaultShmSize ||
			o.Network != "none" || o.GPURequest != GPURequestAuto || o.Init == nil || !*o.Init ||
			time.Duration(o.StopGrace) != DefaultStopGrace || o.User != "" || o.Binary != "" {
			t.Errorf("DecodeOptions(%q) defaults = %+v", raw, o)
		}
	}
}

func TestDecodeOptionsValues(t *testing.T) {
	o, err := DecodeOptions(json.RawMessage(`{
		"image": "registry.example.com:5000/team/loractl@sha256:abc",
		"binary": "/usr/local/bin/docker", "python": "/opt/loractl/venv/bin/python",
		"shm_size": "16g", "memory": "1.5g", "env": ["WANDB_API_KEY"], "read_only": ["/scratch"],
		"user": "1000:1000", "network": "host", "gpu_request": "cdi",
		"ulimits": ["nofile=20000:20000", "memlock=-1:-1"], "init": false, "pull": "never",
		"stop_grace": 120}`))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(o.StopGrace) != 2*time.Minute || *o.Init || o.Memory != "1.5g" || o.Ulimits[1] != "memlock=-1:-1" {
		t.Errorf("decoded %+v", o)
	}
	o, err = DecodeOptions(json.RawMessage(`{"stop_grace": "2m30s"}`))
	if err != nil || time.Duration(o.StopGrace) != 150*time.Second {
		t.Errorf("stop_grace 2m30s = %v, %v", o.StopGrace, err)
	}
}

func TestDecodeOptionsErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		raw, key, msg string
	}{
		{`{"imgae": "x"}`, "imgae", "unknown option"},
		{`{"shm_size": 8}`, "shm_size", "expected string"},
		{`{"shm_size": "8 GB"}`, "shm_size", "not a size"},
		{`{"memory": "-1"}`, "memory", "not a size"},
		{`{"image": "--privileged"}`, "image", "not an image reference"},
		{`{"image": "a b"}`, "image", "not an image reference"},
		{`{"python": "venv/bin/python"}`, "python", "absolute path"},
		{`{"python": "-c"}`, "python", "not an interpreter"},
		{`{"env": ["HF_TOKEN=hf_abc"]}`, "env[0]", "passes the variable by name"},
		{`{"read_only": ["/ok", "rel/dir"]}`, "read_only[1]", "not an absolute path"},
		{`{"read_only": ["/a,readonly=false"]}`, "read_only[0]", "comma"},
		{`{"user": "alice"}`, "user", "numeric"},
		{`{"user": "0:0 --privileged"}`, "user", "numeric"},
		{`{"network": "--privileged"}`, "network", "not a network"},
		{`{"gpu_request": "all"}`, "gpu_request", "auto, flag, cdi"},
		{`{"ulimits": ["nofile"]}`, "ulimits[0]", "name=soft:hard"},
		{`{"init_path": "tini"}`, "init_path", "absolute"},
		{`{"init": false, "init_path": "/usr/bin/tini"}`, "init_path", "init is false"},
		{`{"pull": "sometimes"}`, "pull", "always, missing, never"},
		{`{"stop_grace": "soon"}`, "stop_grace", "not a duration"},
		{`{"stop_grace": -5}`, "stop_grace", "negative"},
		{`{"stop_grace": true}`, "stop_grace", "not a duration"},
		{`{"stop_grace": "1000000h"}`, "stop_grace", "more than 1h0m0s"},
		{`{"network": "container:abc"}`, "network", "would share another container's"},
		{`{"network": "ns:/proc/1/ns/net"}`, "network", "would share"},
		{`["image"]`, "(section)", "expected an object"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := DecodeOptions(json.RawMessage(tt.raw))
			var oe *driver.OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("error = %v, want *driver.OptionError", err)
			}
			if oe.Key != tt.key || !strings.Contains(oe.Message, tt.msg) {
				t.Errorf("error = key %q message %q, want key %q message containing %q", oe.Key, oe.Message, tt.key, tt.msg)
			}
		})
	}
}

func TestDurationJSONRoundTrip(t *testing.T) {
	b, err := json.Marshal(Options{StopGrace: Duration(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"stop_grace":"1m30s"`) {
		t.Errorf("marshalled %s", b)
	}
	o, err := DecodeOptions(b)
	if err != nil || time.Duration(o.StopGrace) != 90*time.Second {
		t.Errorf("round trip = %v, %v", o, err)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0", time.Second: "1", 1500 * time.Millisecond: "2", time.Minute: "60"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestDecodeOptionsForEngine(t *testing.T) {
	tests := []struct {
		engine Engine
		raw    string
		key    string
	}{
		{Docker, `{"init_path": "/usr/bin/tini"}`, "init_path"},
		{Podman, `{"gpu_request": "flag"}`, "gpu_request"},
		{Podman, `{"init_path": "/usr/bin/tini"}`, ""},
		{Docker, `{"gpu_request": "flag"}`, ""},
		{Docker, `{"gpu_request": "cdi"}`, ""},
	}
	for _, tt := range tests {
		_, err := DecodeOptionsFor(tt.engine, json.RawMessage(tt.raw))
		var oe *driver.OptionError
		switch {
		case tt.key == "" && err != nil:
			t.Errorf("%s %s: %v", tt.engine, tt.raw, err)
		case tt.key != "" && (!errors.As(err, &oe) || oe.Key != tt.key):
			t.Errorf("%s %s: error %v, want an OptionError for %s", tt.engine, tt.raw, err, tt.key)
		}
	}
}
