// Byte-level BPE merging (llama.cpp's llm_tokenizer_bpe_session), on token ids.
//
// llama.cpp merges the byte-encoded text of one word: symbols start as single mapped
// characters (one per byte), and the adjacent pair whose merge rule ranks best (lowest rank,
// then leftmost) is merged until no rule applies. We do the same on ids: every merge part gets
// an id (its token id, or a private id past the vocabulary when the part is not a token), and
// rules are looked up by the (left id, right id) pair.

struct BPEMerges: Sendable {
    struct Rule: Sendable {
        var rank: Int32
        /// Id of the merged text (token id, private id ≥ tokenCount, or -1 when that text
        /// is neither a token nor a merge part).
        var result: Int32
    }

    /// (left id << 32 | right id) -> rule.
    let rules: [UInt64: Rule]
    /// Symbol id of the mapped character of each byte (-1 when it has none).
    let byteSymbol: [Int32]
    /// Texts of the private ids (id - tokenCount).
    let privateTexts: [[UInt8]]

    init(merges: [String], textToID: [ByteString: Int32], tokenCount: Int) {
        // Merge parts that are not tokens get private ids past the vocabulary.
        var privateIDs: [ByteString: Int32] = [:]
        var privateTexts: [[UInt8]] = []
        var parsed: [(ArraySlice<UInt8>, ArraySlice<UInt8>)] = []
        parsed.reserveCapacity(merges.count)
        func lookup(_ text: ByteString) -> Int32? { textToID[text] ?? privateIDs[text] }
        func symbolID(_ text: ArraySlice<UInt8>) -> Int32 {
            let key = ByteString(text)
            if let id = lookup(key) { return id }
            let id = Int32(tokenCount + privateTexts.count)
            privateTexts.append(Array(text))
            privateIDs[key] = id
            return id
        }
        for m in merges {
            let bytes = Array(m.utf8)
            // llama.cpp splits at the first space after the first byte.
            guard bytes.count > 1, let sp = bytes[1...].firstIndex(of: 0x20) else {
                parsed.append(([], []))
                continue
            }
            parsed.append((bytes[..<sp], bytes[(sp + 1)...]))
        }
        var partIDs: [(Int32, Int32)] = []
        partIDs.reserveCapacity(parsed.count)
        for (a, b) in parsed {
            if a.isEmpty || b.isEmpty { partIDs.append((-1, -1)); continue }
            partIDs.append((symbolID(a), symbolID(b)))
        }
        var rules: [UInt64: Rule] = [:]
        rules.reserveCapacity(parsed.count)
        for (rank, (a, b)) in parsed.enumerated() {
            let (ia, ib) = partIDs[rank]
            guard ia >= 0 else { continue }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            if rules[key] != nil { continue }  // the first rule for a pair wins
            var merged: [UInt8] = []
            merged.reserveCapacity(a.count + b.count)
            merged.append(contentsOf: a)
            merged.append(contentsOf: b)
            rules[key] = Rule(rank: Int32(rank), result: lookup(ByteString(merged)) ?? -1)
        }
        self.rules = rules
        self.privateTexts = privateTexts
        self.byteSymbol = (0..<256).map { lookup(ByteString(ByteLevelMapping.byteToUTF8[$0])) ?? -1 }
    }
}

/// Reusable buffers for merging one word at a time.
struct BPEScratch {
    var start: [Int32] = []
    var length: [Int32] = []
    var id: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap = BigramHeap()
}

/// A candidate merge of symbols `left` and `right`, valid while both keep the lengths they had
/// when it was queued.
struct Bigram {
    var rank: Int32
    var left: Int32
    var right: Int32
    var leftLength: Int32
    var rightLength: Int32
    var result: Int32

    @inline(__always) static func precedes(_ a: Bigram, _ b: Bigram) -> Bool {
        a.rank < b.rank || (a.rank == b.rank && a.left < b.left)
    }
}

/// Binary min-heap ordered by (rank, left).
struct BigramHeap {
    private(set) var items: [Bigram] = []

    var isEmpty: Bool { items.isEmpty }
    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ x: Bigram) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Bigram.precedes(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Bigram {
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n, Bigram.precedes(items[l], items[m]) { m = l }
                if r < n, Bigram.precedes(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

extension Vocabulary {
    /// Appends the tokens of one pre-tokenized word (raw UTF-8 bytes) to `output`.
    func bpeWord(_ word: ArraySlice<UInt8>, scratch s: inout BPEScratch, into output: inout [Int32]) {
        guard let merges else { return }
        let n = word.count
        if n == 0 { return }

        if ignoreMerges {
            var encoded: [UInt8] = []
            encoded.reserveCapacity(n * 2)
            for b in word { encoded.append(contentsOf: ByteLevelMapping.byteToUTF8[Int(b)]) }
            if let id = textToID[ByteString(encoded)] {
                output.append(id)
                return
            }
        }

        s.start.removeAll(keepingCapacity: true)
        s.length.removeAll(keepingCapacity: true)
        s.id.removeAll(keepingCapacity: true)
        s.prev.removeAll(keepingCapacity: true)
        s.next.removeAll(keepingCapacity: true)
        s.heap.removeAll()
        var i = 0
        for b in word {
            s.start.append(Int32(i))
            s.length.append(1)
            s.id.append(merges.byteSymbol[Int(b)])
            s.prev.append(Int32(i - 1))
            s.next.append(i + 1 == n ? -1 : Int32(i + 1))
            i += 1
        }

        @inline(__always) func queue(_ l: Int32, _ r: Int32, _ s: inout BPEScratch) {
            guard l >= 0, r >= 0 else { return }
            let a = s.id[Int(l)], b = s.id[Int(r)]
            guard a >= 0, b >= 0,
                  let rule = merges.rules[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))] else { return }
            s.heap.push(Bigram(rank: rule.rank, left: l, right: r, leftLength: s.length[Int(l)],
                               rightLength: s.length[Int(r)], result: rule.result))
        }

        for k in 1..<max(n, 1) { queue(Int32(k - 1), Int32(k), &s) }

        while !s.heap.isEmpty {
            let bg = s.heap.pop()
            let l = Int(bg.left), r = Int(bg.right)
            guard s.length[l] == bg.leftLength, s.length[r] == bg.rightLength else { continue }
            s.length[l] += s.length[r]
            s.length[r] = 0
            s.id[l] = bg.result
            let nx = s.next[r]
            s.next[l] = nx
            if nx >= 0 { s.prev[Int(nx)] = Int32(l) }
            queue(s.prev[l], Int32(l), &s)
            queue(Int32(l), nx, &s)
        }

        let base = word.startIndex
        for k in 0..<n where s.length[k] > 0 {
            let id = s.id[k]
            if id >= 0 && Int(id) < tokenCount {
                output.append(id)
                continue
            }
            // Not a token: llama.cpp looks up each byte of the symbol's mapped text on its own.
            let from = base + Int(s.start[k])
            for b in word[from..<(from + Int(s.length[k]))] {
                for e in ByteLevelMapping.byteToUTF8[Int(b)] {
                    if let t = textToID[ByteString([e])] { output.append(t) }
                }
            }
        }
    }

    /// Tokenizes one text fragment (no special tokens in it) with byte-level BPE.
    func bpeFragment(_ bytes: ArraySlice<UInt8>, cache: inout [ByteString: [Int32]],
                     scratch: inout BPEScratch, into output: inout [Int32]) {
        let cpts = TokenizerUTF8.codepoints(bytes)
        let lengths = PreTokenizer.split(cpts, steps: splitSteps)
        // Re-encode (llama.cpp works on the decoded code points, so invalid bytes become
        // U+FFFD), then merge word by word.
        var normalized: [UInt8] = []
        normalized.reserveCapacity(bytes.count + 8)
        var wordEnds: [Int] = []
        wordEnds.reserveCapacity(lengths.count)
        var c = 0
        for len in lengths {
            for _ in 0..<len { TokenizerUTF8.append(cpts[c], to: &normalized); c += 1 }
            wordEnds.append(normalized.count)
        }
        var from = 0
        for end in wordEnds {
            let word = normalized[from..<end]
            let key = ByteString(word)
            from = end
            if let cached = cache[key] {
                output.append(contentsOf: cached)
                continue
            }
            let mark = output.count
            bpeWord(word, scratch: &scratch, into: &output)
            cache[key] = Array(output[mark...])
        }
    }
}
