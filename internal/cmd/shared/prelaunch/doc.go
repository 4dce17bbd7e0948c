// Package prelaunch holds what the commands that launch or plan runs (train, sweep,
// plan) share before a launch: the data check with the real tokenizer, the memory
// estimate from a resolved config, the batch choice and the GPU pre-flight. Sibling
// commands share through it and never import each other (the layout of GitHub CLI's
// pkg/cmd/<area>/shared).
package prelaunch
