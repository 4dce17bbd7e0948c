package cmdutil

import "github.com/loractl/loractl/run"

// RunManifest loads the run a user named by its id or a unique prefix of it, the way
// every command that takes a RUN argument does. An unknown or ambiguous reference is
// invalid input (exit 2); the returned manifest's RunID is the whole id.
func RunManifest(store *run.Store, ref string) (*run.Manifest, error) {
	id, err := store.Resolve(ref)
	if err != nil {
		return nil, Invalid(err)
	}
	m, err := store.Manifest(id)
	if err != nil {
		return nil, Invalid(err)
	}
	return m, nil
}
