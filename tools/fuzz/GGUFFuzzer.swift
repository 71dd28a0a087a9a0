// libFuzzer entry point for the GGUF reader, ModelConfig and writer round trip.
// Built by tools/fuzz/run.sh together with Sources/SpikeRun/GGUF/*.swift (one module), with
// -sanitize=fuzzer,address. It crashes — so libFuzzer saves the input — when parsing traps,
// reads out of bounds, throws anything but a one-line .format/.unsupported error, or when a
// file we accept does not survive a copy through GGUFWriter. Mirrors GGUFFuzzCheck in
// Tests/SpikeRunTests/GGUFFuzzTests.swift.

@_cdecl("LLVMFuzzerTestOneInput")
public func ggufFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do throws(SpikeRunError) {
        let f = try GGUFFile(bytes: bytes)
        exercise(f)
    } catch {
        check(error)
    }
    return 0
}

private func check(_ error: SpikeRunError) {
    precondition(error.kind == .format || error.kind == .unsupported, "unexpected kind: \(error)")
    precondition(!error.message.isEmpty && !error.message.contains("\n"), "bad message: \(error)")
}

private func exercise(_ f: GGUFFile) {
    var sum = 0
    for t in f.tensors {
        let d = f.data(t)
        precondition(d.count == t.byteCount && f.dataOffset + t.offset + t.byteCount <= f.fileSize)
        // Touch both ends so ASan sees any out-of-bounds view.
        if let first = d.first, let last = d.last { sum &+= Int(first) &+ Int(last) }
        precondition(f.tensor(t.name) == t && t.rowCount * t.rowBytes == t.byteCount)
    }
    for k in f.metadata.keys {
        sum &+= f.metadata.string(k)?.utf8.count ?? 0
        sum &+= f.metadata.int(k) ?? 0
        sum &+= f.metadata.strings(k)?.count ?? 0
        sum &+= f.metadata.ints(k)?.count ?? 0
        sum &+= f.metadata.floats(k)?.count ?? 0
    }
    do throws(SpikeRunError) {
        sum &+= try ModelConfig(gguf: f).nLayer
    } catch {
        check(error)
    }
    if let w = try? GGUFWriter(copying: f) {
        let bytes = w.serialize()
        do throws(SpikeRunError) {
            let again = try GGUFWriter(copying: try GGUFFile(bytes: bytes)).serialize()
            precondition(again == bytes, "writer round trip differs")
        } catch {
            preconditionFailure("re-reading our own copy failed: \(error.message)")
        }
    }
    blackHole(sum)
}

@inline(never) private func blackHole(_ x: Int) { if x == 0x5EED_F00D { print(x) } }
