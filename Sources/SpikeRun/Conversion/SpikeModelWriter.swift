/// Writes a spike-driven model as a standard GGUF: the source's metadata plus the `spike.`
/// namespace, its tensors (int4: the GGUF's own Q4_1/Q8_0 codes, unchanged) or, for int8 and
/// ternary, I8 code tensors under the same names with F32 row scales beside them
/// (`blk.N.attn_q.scale`), and the calibrated V-cache scales (`spike.v_scale`).
/// The file is written atomically (temporary file, fsync, rename).
public enum SpikeModelWriter {
    public static func write(source: Model, setup: SpikeSetup, to path: String,
                             progress: ((Double) -> Void)? = nil) throws(SpikeRunError) {
        let file = source.file
        var w = GGUFWriter()
        for key in file.metadata.keys where !key.hasPrefix("spike.") {
            try w.set(key, file.metadata[key]!)
        }
        try setup.config.write(into: &w)
        let linearSuffixes = SpikeRuntime.projections.map { "." + $0.0 + ".weight" }
        for t in file.tensors {
            let isLinear = t.name.hasPrefix("blk.") && linearSuffixes.contains { t.name.hasSuffix($0) }
            // int4/int4i keep the file's blocks (int4i derives its integer scales when it loads)
            guard isLinear, setup.config.weights != .int4, setup.config.weights != .int4i else {
                try w.addTensor(t, from: file)
                continue
            }
            let rows = setup.config.weights == .ternary
                ? IntegerRows.ternary(from: try source.dequantize(t), nOut: t.rowCount, nIn: t.rowLength)
                : try IntegerRows.int8(model: source, tensor: t)
            try w.addTensor(name: t.name, shape: t.shape, type: .i8,
                            bytes: rows.codes.map { UInt8(bitPattern: $0) })
            try w.addTensor(name: t.name.replacingOccurrences(of: ".weight", with: ".scale"),
                            shape: [t.rowCount], type: .f32, bytes: floatBytes(rows.rowScales))
        }
        if let vs = setup.vScales {
            let c = source.config
            try w.addTensor(name: "spike.v_scale", shape: [c.nHeadKV * c.headDim, c.nLayer], type: .f32,
                            bytes: floatBytes(vs))
        }
        try w.write(to: path, progress: progress)
    }

    static func floatBytes(_ v: [Float]) -> [UInt8] {
        v.withUnsafeBytes { Array($0) }
    }
}
