package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/bits"
	"slices"
)

// hashKey is a 128-bit content hash: enough that a collision among billions of examples is
// not a practical concern, at a fraction of the memory of the text itself.
type hashKey [16]byte

// Separators in the normalised byte stream that is hashed. 0xFE and 0xFF never occur in
// UTF-8, so no content can fake a message boundary.
const (
	sepMessage = 0xFF
	sepSystem  = 0xFE
)

// Estimate constants for counting tokens without a tokenizer. BPE tokenizers average about
// 0.75 English words or 4 bytes per token; a chat template adds a few tokens per message.
const (
	estBytesPerToken   = 4
	estTokensPerWord   = 4.0 / 3.0
	estTemplatePerTurn = 4
)

// facts are what the dataset-level checks need from one valid example.
type facts struct {
	full, prompt hashKey
	hasSystem    bool
	system       []byte // normalised first system message; valid until the next example
	systemHash   hashKey
	messages     int
	roles        [numRoles]int
	// Estimated tokens: whole example, trainable assistant tokens, and those of them that
	// survive truncation to max length.
	estTotal, estAssistant, estKept int
}

// factBuilder computes facts with reused buffers.
type factBuilder struct {
	norm []byte
	sys  []byte
	h    hash.Hash
	sum  []byte
	f    facts
}

// build derives the facts of a valid example. maxLength ≤ 0 disables truncation.
func (b *factBuilder) build(msgs []message, maxLength int) *facts {
	f := &b.f
	*f = facts{messages: len(msgs)}
	b.norm = b.norm[:0]
	b.sys = b.sys[:0]
	promptEnd, sawUser := -1, false
	cursor := 1 // a BOS token
	for k, m := range msgs {
		f.roles[m.role]++
		start := len(b.norm)
		if m.role == roleSystem {
			// System prompts are hashed after everything else, so the prompt key (the
			// conversation before the first answer) does not depend on them.
			var words int
			b.sys = append(b.sys, byte(m.role))
			b.sys, words = appendNormalized(b.sys, m.content)
			b.sys = append(b.sys, sepMessage)
			if k == 0 {
				f.hasSystem = true
				f.system = b.sys[1 : len(b.sys)-1]
			} else {
				// Where a later system message sits is part of the conversation.
				b.sys = binary.AppendUvarint(b.sys, uint64(k))
			}
			cursor += estTemplatePerTurn + estimateTokens(len(b.sys)-2, words)
			continue
		}
		if m.role == roleAssistant && promptEnd < 0 {
			promptEnd = len(b.norm)
		}
		if m.role == roleUser {
			sawUser = true
		}
		var words int
		b.norm = append(b.norm, byte(m.role))
		b.norm, words = appendNormalized(b.norm, m.content)
		b.norm = append(b.norm, sepMessage)
		est := estimateTokens(len(b.norm)-start-2, words)
		cursor += estTemplatePerTurn
		if m.role == roleAssistant && m.weight != 0 {
			span := est + 1 // the end-of-turn token is learned too
			f.estAssistant += span
			f.estKept += overlap(cursor, cursor+span, maxLength)
			cursor += span
		} else {
			cursor += est
		}
	}
	f.estTotal = cursor
	if f.hasSystem {
		f.systemHash = sum128(f.system)
	}
	b.norm = append(b.norm, sepSystem)
	b.norm = append(b.norm, b.sys...)
	// One pass over the bytes for both hashes: Sum does not disturb the running state.
	if b.h == nil {
		b.h = sha256.New()
	}
	b.h.Reset()
	hasPrompt := promptEnd > 0 && sawUser
	if hasPrompt {
		b.h.Write(b.norm[:promptEnd])
		b.sum = b.h.Sum(b.sum[:0])
		f.prompt = hashKey(b.sum[:16])
		b.h.Write(b.norm[promptEnd:])
	} else {
		b.h.Write(b.norm)
	}
	b.sum = b.h.Sum(b.sum[:0])
	f.full = hashKey(b.sum[:16])
	if !hasPrompt {
		// No user turn before the first answer: there is no prompt to leak by, so the
		// example stands for itself.
		f.prompt = f.full
	}
	return f
}

// overlap is how many of the positions [start, end) lie below limit (all when limit ≤ 0).
func overlap(start, end, limit int) int {
	if limit <= 0 || end <= limit {
		return end - start
	}
	if start >= limit {
		return 0
	}
	return limit - start
}

func estimateTokens(bytes, words int) int {
	byBytes := (bytes + estBytesPerToken - 1) / estBytesPerToken
	byWords := int(float64(words)*estTokensPerWord + 0.999)
	return max(byBytes, byWords)
}

func sum128(b []byte) hashKey {
	s := sha256.Sum256(b)
	return hashKey(s[:16])
}

// spaceBit is 1 for ASCII whitespace: the characters whitespace normalisation collapses.
// normByte maps each of them to ' ' and every other byte to itself.
var spaceBit, normByte = func() (sp, nb [256]byte) {
	for c := range nb {
		nb[c] = byte(c)
	}
	for _, c := range []byte(" \t\n\r\v\f") {
		sp[c], nb[c] = 1, ' '
	}
	return sp, nb
}()

// appendNormalized appends s with leading and trailing whitespace removed and every inner
// run of whitespace replaced by one space, and returns the number of words.
//
// It is the hottest loop of a check. Eight bytes that need no change (no control
// character, no two spaces in a row, including across the previous byte) are copied at
// once; other bytes go through a branch-free step (on prose a branch per byte on "is this
// a space?" mispredicts every few bytes and costs more than the copy itself).
func appendNormalized(dst, s []byte) ([]byte, int) {
	n := len(dst)
	dst = slices.Grow(dst, len(s))[:n+len(s)]
	out := dst[n:]
	j, words := 0, 0
	prev := 1 // 1 after whitespace (and at the start, so leading space is dropped)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		ctl := ^((x & lo7s) + 0x6060606060606060 | x) & highs // bytes below 0x20
		q := x ^ 0x2020202020202020
		spc := ^((q & lo7s) + lo7s | q) & highs // spaces
		if ctl == 0 && spc&(spc>>8) == 0 && (prev == 0 || spc&0x80 == 0) {
			binary.LittleEndian.PutUint64(out[j:], x) // j ≤ i: the output never outruns the input
			j += 8
			// A word starts after each space but the last byte's, and at the first byte
			// when it follows whitespace.
			words += bits.OnesCount64(spc&^(0x80<<56)) + prev
			prev = int(spc >> 63)
			continue
		}
		for _, c := range s[i : i+8] {
			sp := int(spaceBit[c])
			out[j] = normByte[c]
			j += 1 - sp&prev // a space right after a space (or at the start) is overwritten
			words += (1 - sp) & prev
			prev = sp
		}
	}
	for _, c := range s[i:] {
		sp := int(spaceBit[c])
		out[j] = normByte[c]
		j += 1 - sp&prev
		words += (1 - sp) & prev
		prev = sp
	}
	if j > 0 && out[j-1] == ' ' {
		j-- // one trailing space is left by the loop
	}
	return dst[:n+j], words
}

// normalizeString is appendNormalized for one string, for callers outside the hot path.
func normalizeString(s string) string {
	b, _ := appendNormalized(nil, []byte(s))
	return string(b)
}
