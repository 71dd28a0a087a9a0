import Foundation

extension SpikeAnalysis {
    /// The analysis as pretty, key-sorted JSON (`format: spikerun-analysis`).
    public func jsonData() throws(SpikeRunError) -> Data { try AnalysisIO.encodeJSON(self) }

    /// Reads an analysis written by ``write(to:basename:)``.
    public static func load(from url: URL) throws(SpikeRunError) -> SpikeAnalysis {
        let data = try AnalysisIO.read(url)
        do { return try JSONDecoder().decode(SpikeAnalysis.self, from: data) } catch {
            throw .format("'\(url.path)' is not a spikerun analysis: \(error)")
        }
    }

    /// One CSV row per (layer, site): `layer,site,encoding,steps,mean_steps,tokens,neurons`
    /// followed by ``SiteMeasures/columns`` (empty cells where undefined).
    public func siteCSV() -> String {
        var out = (["layer", "site", "encoding", "steps", "mean_steps", "tokens", "neurons"] + SiteMeasures.columns)
            .joined(separator: ",") + "\n"
        for s in sites {
            var row = [String(s.layer), s.site, s.encoding, String(s.steps), csvNumber(s.meanSteps),
                       String(s.tokens), String(s.neurons)]
            row += SiteMeasures.columns.map { s.mean[$0].map(csvNumber) ?? "" }
            out += row.joined(separator: ",") + "\n"
        }
        return out
    }

    /// One CSV row per recorded neuron (empty if per-neuron values were not kept).
    public func neuronCSV() -> String {
        var out = "layer,site,neuron,spikes_per_activation,firing_rate,count_entropy,count_entropy_mm,"
            + "word_entropy,word_entropy_mm,block_length,block_entropy,entropy_rate_block,lz_phrases,"
            + "entropy_rate_lz,token_mi,token_nmi,token_mi_corrected,category_mi,category_nmi,category_mi_corrected\n"
        for s in sites {
            for n in s.neuronMeasures ?? [] {
                let cells: [String] = [
                    String(s.layer), s.site, String(n.neuron), csvNumber(n.spikesPerActivation),
                    csvNumber(n.firingRate), csvNumber(n.countEntropy.bits), csvNumber(n.countEntropy.millerMadow),
                    csvNumber(n.wordEntropy.bits), csvNumber(n.wordEntropy.millerMadow),
                    n.blockLength.map(String.init) ?? "", n.blockEntropy.map { csvNumber($0.bits) } ?? "",
                    n.entropyRateBlock.map(csvNumber) ?? "", String(n.lzPhrases), csvNumber(n.entropyRateLZ),
                    n.tokenInformation.map { csvNumber($0.bits) } ?? "",
                    n.tokenInformation.map { csvNumber($0.normalized) } ?? "",
                    n.tokenInformation.map { csvNumber($0.correctedBits) } ?? "",
                    n.categoryInformation.map { csvNumber($0.bits) } ?? "",
                    n.categoryInformation.map { csvNumber($0.normalized) } ?? "",
                    n.categoryInformation.map { csvNumber($0.correctedBits) } ?? "",
                ]
                out += cells.joined(separator: ",") + "\n"
            }
        }
        return out
    }

    /// One CSV row per layer of every group comparison.
    public func comparisonCSV() -> String {
        var out = "measure,site,group_a,group_b,layer,count_a,count_b,mean_a,mean_b,difference,direction,"
            + "p,p_adjusted,exact,significant\n"
        for c in comparisons {
            for r in c.rows {
                out += [c.measure.rawValue, c.site, c.groupA, c.groupB, String(r.layer), String(r.countA),
                        String(r.countB), csvNumber(r.meanA), csvNumber(r.meanB), csvNumber(r.difference),
                        r.direction, csvNumber(r.p), csvNumber(r.pAdjusted), String(r.exact),
                        String(r.significant)].joined(separator: ",") + "\n"
            }
        }
        return out
    }

    /// Writes `<basename>.json`, `<basename>.csv` (per site), `<basename>_neurons.csv` and, if
    /// any comparison was run, `<basename>_comparisons.csv` into `directory`, each atomically.
    public func write(to directory: URL, basename: String = "metrics") throws(SpikeRunError) {
        try AnalysisIO.makeDirectory(directory)
        try AnalysisIO.writeAtomically(jsonData(), to: directory.appendingPathComponent(basename + ".json"))
        try AnalysisIO.writeAtomically(Data(siteCSV().utf8), to: directory.appendingPathComponent(basename + ".csv"))
        try AnalysisIO.writeAtomically(Data(neuronCSV().utf8),
                                to: directory.appendingPathComponent(basename + "_neurons.csv"))
        if !comparisons.isEmpty {
            try AnalysisIO.writeAtomically(Data(comparisonCSV().utf8),
                                    to: directory.appendingPathComponent(basename + "_comparisons.csv"))
        }
    }
}

/// Shortest round-trip text of a Double (17 significant digits at most); `nan`/`inf` as words.
func csvNumber(_ v: Double) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v > 0 ? "inf" : "-inf" }
    return "\(v)"
}
