// SentencePiece-style merging (llama.cpp's llm_tokenizer_spm_session): start from UTF-8
// characters, repeatedly merge the adjacent pair whose concatenation is the token with the
// highest score (leftmost on ties), then fall back to byte tokens for characters that are not
// tokens.

struct ScoredBigram {
    var score: Float
    var left: Int32
    var right: Int32
    var size: Int32

    /// Max-heap order: higher score first, then leftmost.
    @inline(__always) static func precedes(_ a: ScoredBigram, _ b: ScoredBigram) -> Bool {
        a.score > b.score || (a.score == b.score && a.left < b.left)
    }
}

struct ScoredBigramHeap {
    private var items: [ScoredBigram] = []
    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ x: ScoredBigram) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard ScoredBigram.precedes(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> ScoredBigram {
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n, ScoredBigram.precedes(items[l], items[m]) { m = l }
                if r < n, ScoredBigram.precedes(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

extension Vocabulary {
    /// Tokenizes `text` (spaces already escaped to U+2581) with SentencePiece merging.
    func spmFragment(_ text: [UInt8], into output: inout [Int32]) {
        let total = text.count
        if total == 0 { return }
        var start: [Int32] = [], length: [Int32] = [], prev: [Int32] = [], next: [Int32] = []
        var offset = 0
        var index: Int32 = 0
        while offset < total {
            let len = min(TokenizerUTF8.sequenceLength(lead: text[offset]), total - offset)
            start.append(Int32(offset))
            length.append(Int32(len))
            offset += len
            prev.append(index - 1)
            next.append(offset == total ? -1 : index + 1)
            index += 1
        }

        var heap = ScoredBigramHeap()
        func tryAdd(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            let from = Int(start[Int(l)])
            let size = Int(length[Int(l)] + length[Int(r)])
            guard let id = textToID[ByteString(text[from..<(from + size)])] else { return }
            heap.push(ScoredBigram(score: scores[Int(id)], left: l, right: r, size: Int32(size)))
        }
        for i in 1..<max(Int(index), 1) { tryAdd(Int32(i - 1), Int32(i)) }

        while !heap.isEmpty {
            let bg = heap.pop()
            let l = Int(bg.left), r = Int(bg.right)
            if length[l] == 0 || length[r] == 0 || length[l] + length[r] != bg.size { continue }
            length[l] += length[r]
            length[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            tryAdd(prev[l], Int32(l))
            tryAdd(Int32(l), next[l])
        }

        var i: Int32 = 0
        while i != -1 {
            let from = Int(start[Int(i)])
            let piece = text[from..<(from + Int(length[Int(i)]))]
            if let id = textToID[ByteString(piece)] {
                output.append(id)
            } else {
                for b in piece {
                    if let id = byteToken(b) { output.append(id) }
                }
            }
            i = next[Int(i)]
        }
    }

    /// The `<0xAB>` token of a byte, or the token whose text is that single byte.
    func byteToken(_ b: UInt8) -> Int32? {
        let hex = Array("0123456789ABCDEF".utf8)
        let name: [UInt8] = [UInt8(ascii: "<"), UInt8(ascii: "0"), UInt8(ascii: "x"),
                             hex[Int(b >> 4)], hex[Int(b & 15)], UInt8(ascii: ">")]
        if let id = textToID[ByteString(name)] { return id }
        if let id = textToID[ByteString([b])] { return id }
        return unk
    }
}
