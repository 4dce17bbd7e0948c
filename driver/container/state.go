package container

import (
	"os"
	"time"

	"github.com/loractl/loractl/driver"
)

// handleState is the driver-private part of a handle: everything a controller process
// that did not start the container needs to reach it again.
type handleState struct {
	Engine Engine `json:"engine"`
	// Binary is the engine executable resolved at Start.
	Binary string `json:"binary"`
	// Name is the container's name, loractl-<run id>.
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
	// Endpoint holds the variables that chose the engine endpoint at Start (DOCKER_HOST,
	// CONTAINERS_STORAGE_CONF, ...): the container lives there, whatever the environment
	// of a later controller says. None of them carries a secret.
	Endpoint map[string]string `json:"endpoint,omitempty"`
	// StopGraceMS is the stop_grace option, used when Stop is given no grace.
	StopGraceMS int64 `json:"stop_grace_ms,omitempty"`
}

// endpointVars are, per engine, the variables that decide which engine instance (and
// so which set of containers) its CLI talks to.
var endpointVars = map[Engine][]string{
	Docker: {"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"},
	Podman: {"CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"},
}

// endpointEnv captures the engine's endpoint variables that are set now.
func endpointEnv(e Engine) map[string]string {
	m := map[string]string{}
	for _, k := range endpointVars[e] {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// containerState is the part of `docker inspect`'s (and podman's) State object the
// driver reads; both engines use these names.
type containerState struct {
	Status     string    `json:"Status"`
	Running    bool      `json:"Running"`
	Paused     bool      `json:"Paused"`
	Restarting bool      `json:"Restarting"`
	OOMKilled  bool      `json:"OOMKilled"`
	Dead       bool      `json:"Dead"`
	ExitCode   int       `json:"ExitCode"`
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
}

// status maps the engine's state onto the contract's: created (and podman's
// configured/initialized) is pending, running/paused/restarting is running, and
// exited/dead/stopped is exited with its exit result.
func (cs *containerState) status() *driver.Status {
	s := &driver.Status{StartedAt: realTime(cs.StartedAt), FinishedAt: realTime(cs.FinishedAt)}
	switch cs.Status {
	case "created", "configured", "initialized":
		s.State = driver.StatePending
	case "running", "paused", "restarting", "stopping":
		s.State = driver.StateRunning
		if cs.Status != "running" {
			s.Reason = cs.Status
		}
	case "exited", "dead", "stopped", "removing":
		s.State = driver.StateExited
		s.Exit = exitFromCode(cs.ExitCode, cs.OOMKilled, cs.Error)
	default:
		s.State = driver.StateUnknown
		s.Reason = cs.Status
	}
	return s
}

// realTime drops the engines' "0001-01-01T00:00:00Z" placeholder for "not yet".
func realTime(t time.Time) time.Time {
	if t.Year() <= 1 {
		return time.Time{}
	}
	return t
}
