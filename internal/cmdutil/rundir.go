package cmdutil

// RunDir resolves a run id or a unique prefix of one to the run's id and directory.
// An unknown or ambiguous reference is invalid input (exit 2).
func RunDir(f *Factory, ref string) (id, dir string, err error) {
	store, err := f.Store()
	if err != nil {
		return "", "", err
	}
	id, err = store.Resolve(ref)
	if err != nil {
		return "", "", Invalid(err)
	}
	return id, store.Dir(id), nil
}
