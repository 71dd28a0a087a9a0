import Foundation

/// Settings of the HTML report.
public struct ReportOptions: Sendable, Hashable {
    /// Page title.
    public var title = "spikerun spike analysis"
    /// Site shown in the raster (default: the first recorded key).
    public var rasterKey: RecordingKey? = nil
    /// Recorded-neuron positions (indices into the site's neuron list) shown in the raster
    /// (default: the first 16).
    public var rasterNeurons: [Int]? = nil
    /// Tokens shown in the raster, from the first.
    public var rasterTokens = 40
    /// Free text shown under the title (HTML-escaped).
    public var note: String? = nil

    /// Creates options with the defaults.
    public init(title: String = "spikerun spike analysis", rasterKey: RecordingKey? = nil,
                rasterNeurons: [Int]? = nil, rasterTokens: Int = 40, note: String? = nil) {
        self.title = title
        self.rasterKey = rasterKey
        self.rasterNeurons = rasterNeurons
        self.rasterTokens = rasterTokens
        self.note = note
    }
}

/// A self-contained HTML report (inline CSS and SVG, no scripts): spike raster, firing per
/// layer and site, entropy and mutual information per layer, group comparisons.
public enum AnalysisReport {
    static let siteColors: [SpikeSite: String] = [
        .A: "#1f77b4", .O: "#ff7f0e", .F: "#2ca02c", .D: "#d62728", .H: "#9467bd",
    ]

    /// The report page.
    public static func html(recording: SpikeRecording, analysis: SpikeAnalysis,
                            options: ReportOptions = ReportOptions()) -> String {
        var body = "<h1>\(htmlEscape(options.title))</h1>\n"
        let nSent = Set(recording.tokenSentence.filter { $0 >= 0 }).count
        body += "<p class=meta>\(recording.tokens.count) tokens, \(nSent) sentences, "
            + "\(analysis.sites.count) recorded sites, layers \(rangeText(recording.layers)); "
            + "token stimulus = top \(analysis.options.topKTokens) token ids; "
            + "\(analysis.options.shufflePermutations) stimulus shuffles (seed \(analysis.options.seed)).</p>\n"
        if let note = options.note { body += "<p>\(htmlEscape(note))</p>\n" }

        if let key = options.rasterKey ?? recording.keys.first, let site = recording.sites[key] {
            body += "<h2>Spike raster: \(htmlEscape(key.description)) (\(htmlEscape(site.encoding.name)), T = \(site.steps))</h2>\n"
            body += raster(site, recording: recording, neurons: options.rasterNeurons, tokens: options.rasterTokens)
        }

        let sitesPresent = SpikeSite.allCases.filter { s in analysis.sites.contains { $0.site == s.name } }
        func series(_ column: String) -> [Chart.Series] {
            sitesPresent.map { s in
                Chart.Series(name: s.name, color: siteColors[s]!,
                             points: analysis.sites.filter { $0.site == s.name }
                                 .compactMap { m in m.mean[column].map { (Double(m.layer), $0) } })
            }.filter { !$0.points.isEmpty }
        }
        body += "<h2>Firing per layer</h2>\n<div class=row>"
        body += Chart.line(title: "Spikes per activation (SPA)", xLabel: "layer", yLabel: "spikes / activation",
                           series: series("spikes_per_activation"))
        body += Chart.line(title: "Firing rate (SPA / T)", xLabel: "layer", yLabel: "spikes / step",
                           series: series("firing_rate"))
        body += "</div>\n<h2>Entropy per layer</h2>\n<div class=row>"
        body += Chart.line(title: "Count entropy, Miller–Madow (bits / token)", xLabel: "layer", yLabel: "bits",
                           series: series("count_entropy_mm"))
        body += Chart.line(title: "Entropy rate h_L (bits / token)", xLabel: "layer", yLabel: "bits",
                           series: series("entropy_rate_block_per_token"))
        body += Chart.line(title: "Entropy rate LZ76 (bits / token)", xLabel: "layer", yLabel: "bits",
                           series: series("entropy_rate_lz_per_token"))
        body += "</div>\n<h2>Mutual information per layer</h2>\n<div class=row>"
        body += Chart.line(title: "MI with token identity − shuffle (bits)", xLabel: "layer", yLabel: "bits",
                           series: series("token_mi_corrected"))
        body += Chart.line(title: "NMI with token identity", xLabel: "layer", yLabel: "NMI",
                           series: series("token_nmi"))
        if analysis.sites.contains(where: { $0.mean["category_mi"] != nil }) {
            body += Chart.line(title: "MI with sentence category − shuffle (bits)", xLabel: "layer", yLabel: "bits",
                               series: series("category_mi_corrected"))
        }
        body += "</div>\n"

        for c in analysis.comparisons {
            body += "<h2>\(htmlEscape(c.groupA)) vs \(htmlEscape(c.groupB)): \(htmlEscape(c.measure.rawValue)) at site \(htmlEscape(c.site))</h2>\n"
            body += "<p>Two-sided permutation test per layer, Benjamini–Hochberg across layers; "
                + "* p<sub>BH</sub> &lt; 0.05, ** &lt; 0.01, *** &lt; 0.001. \(htmlEscape(c.summary)).</p>\n"
            body += Chart.groupBars(c)
            body += comparisonTable(c)
        }

        body += "<h2>Per-site values (mean over neurons)</h2>\n" + siteTable(analysis)
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(htmlEscape(options.title))</title>
        <style>
        body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
        h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
        .meta{color:#555;font-size:13px}.row{display:flex;flex-wrap:wrap;gap:12px}
        svg{background:#fff;border:1px solid #e3e3e3}svg text{font-family:inherit}
        table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
        th{background:#f4f4f4}td.l{text-align:left}.sig{font-weight:bold;color:#b00}
        </style></head><body>
        \(body)
        </body></html>

        """
    }

    /// Writes the report to `url` atomically.
    public static func write(recording: SpikeRecording, analysis: SpikeAnalysis, to url: URL,
                             options: ReportOptions = ReportOptions()) throws(SpikeRunError) {
        try AnalysisIO.makeDirectory(url.deletingLastPathComponent())
        try AnalysisIO.writeAtomically(Data(html(recording: recording, analysis: analysis, options: options).utf8), to: url)
    }

    static func rangeText(_ l: [Int]) -> String {
        guard let a = l.first, let b = l.last else { return "none" }
        return a == b ? "\(a)" : "\(a)–\(b)"
    }

    static func raster(_ site: SiteRecording, recording: SpikeRecording, neurons: [Int]?, tokens: Int) -> String {
        let rows = (neurons ?? Array(0..<min(16, site.neuronCount))).filter { $0 >= 0 && $0 < site.neuronCount }
        let nTok = min(tokens, site.tokenCount), T = max(site.steps, 1)
        guard !rows.isEmpty, nTok > 0 else { return "<p>(no spikes recorded)</p>" }
        let left = 64.0, top = 12.0, bottom = 74.0, right = 12.0
        let cell = max(2.0, min(10.0, 1180.0 / Double(nTok * T)))
        let rowH = 14.0
        let w = left + Double(nTok * T) * cell + right, h = top + Double(rows.count) * rowH + bottom
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(svgNum(w))\" height=\"\(svgNum(h))\" viewBox=\"0 0 \(svgNum(w)) \(svgNum(h))\">"
        for i in 0..<nTok where i % 2 == 1 {   // shade alternate tokens
            s += "<rect x=\"\(svgNum(left + Double(i * T) * cell))\" y=\"\(svgNum(top))\" width=\"\(svgNum(Double(T) * cell))\" "
                + "height=\(q(Double(rows.count) * rowH)) fill=\"#f3f6fa\"/>"
        }
        for (r, j) in rows.enumerated() {
            let y = top + Double(r) * rowH
            s += "<text x=\"\(svgNum(left - 6))\" y=\"\(svgNum(y + rowH * 0.72))\" font-size=\"10\" text-anchor=\"end\">n\(site.neuronIndices[j])</text>"
            for i in 0..<nTok {
                let planes = try? site.encoding.encode(site.count(token: i, neuron: j), steps: T)
                for (t, v) in (planes ?? []).enumerated() where v != 0 {
                    let x = left + Double(i * T + t) * cell
                    s += "<rect x=\"\(svgNum(x + 0.5))\" y=\"\(svgNum(y + 2))\" width=\"\(svgNum(max(1, cell - 1)))\" height=\"\(svgNum(rowH - 4))\" "
                        + "fill=\"\(v > 0 ? "#1f4e9a" : "#d0342c")\"/>"
                }
            }
        }
        for i in 0...nTok {   // token boundaries
            let x = left + Double(i * T) * cell
            s += "<line x1=\"\(svgNum(x))\" y1=\"\(svgNum(top))\" x2=\"\(svgNum(x))\" y2=\"\(svgNum(top + Double(rows.count) * rowH))\" stroke=\"#c8c8c8\" stroke-width=\"0.6\"/>"
        }
        let yText = top + Double(rows.count) * rowH + 8
        for i in 0..<nTok {
            let label = i < recording.tokenTexts.count && !recording.tokenTexts[i].isEmpty
                ? recording.tokenTexts[i] : "#\(recording.tokens[i])"
            let x = left + (Double(i * T) + Double(T) / 2) * cell
            s += "<text transform=\"translate(\(svgNum(x)),\(svgNum(yText))) rotate(60)\" font-size=\"9\" fill=\"#444\">\(htmlEscape(String(label.prefix(12))))</text>"
        }
        s += "<text x=\"\(svgNum(left))\" y=\"\(svgNum(h - 4))\" font-size=\"10\" fill=\"#555\">time (token · T + step); "
            + "blue +1, red −1; shaded bands = tokens</text></svg>\n"
        return s
    }

    static func siteTable(_ a: SpikeAnalysis) -> String {
        let cols = ["spikes_per_activation", "firing_rate", "count_entropy", "count_entropy_mm",
                    "entropy_rate_block_per_token", "entropy_rate_lz_per_token", "token_mi", "token_nmi",
                    "token_mi_corrected", "category_mi", "category_mi_corrected"]
        var s = "<table><tr><th>layer</th><th>site</th><th>T</th><th>tokens</th><th>neurons</th>"
        s += cols.map { "<th>\(htmlEscape($0.replacingOccurrences(of: "_", with: " ")))</th>" }.joined() + "</tr>\n"
        for m in a.sites {
            s += "<tr><td>\(m.layer)</td><td class=l>\(htmlEscape(m.site))</td><td>\(m.steps)</td><td>\(m.tokens)</td><td>\(m.neurons)</td>"
            s += cols.map { c in "<td>\(m.mean[c].map { String(format: "%.4g", $0) } ?? "–")</td>" }.joined() + "</tr>\n"
        }
        return s + "</table>\n"
    }

    static func comparisonTable(_ c: GroupComparison) -> String {
        var s = "<table><tr><th>layer</th><th>n \(htmlEscape(c.groupA))</th><th>n \(htmlEscape(c.groupB))</th><th>mean \(htmlEscape(c.groupA))</th>"
            + "<th>mean \(htmlEscape(c.groupB))</th><th>difference</th><th>p</th><th>p BH</th><th></th></tr>\n"
        for r in c.rows {
            s += "<tr><td>\(r.layer)</td><td>\(r.countA)</td><td>\(r.countB)</td><td>\(String(format: "%.4g", r.meanA))</td>"
                + "<td>\(String(format: "%.4g", r.meanB))</td><td>\(String(format: "%+.3g", r.difference))</td>"
                + "<td>\(String(format: "%.3g", r.p))\(r.exact ? " (exact)" : "")</td><td>\(String(format: "%.3g", r.pAdjusted))</td>"
                + "<td class=sig>\(stars(r.pAdjusted)) \(r.significant ? htmlEscape(r.difference > 0 ? "\(c.groupA) higher" : "\(c.groupA) lower") : "")</td></tr>\n"
        }
        return s + "</table>\n"
    }

    static func stars(_ p: Double) -> String {
        p < 0.001 ? "***" : p < 0.01 ? "**" : p < 0.05 ? "*" : ""
    }
}

/// Escapes text for HTML and SVG.
func htmlEscape(_ s: String) -> String {
    var o = ""
    for c in s {
        switch c {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        default: o.append(c)
        }
    }
    return o
}

/// Compact number for SVG coordinates.
func svgNum(_ v: Double) -> String { String(format: "%.1f", v) }
private func q(_ v: Double) -> String { "\"\(svgNum(v))\"" }

/// Minimal SVG charts drawn from scratch.
enum Chart {
    struct Series {
        var name: String
        var color: String
        var points: [(Double, Double)]
    }

    /// "Nice" tick values covering `lo … hi`.
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
        var lo = lo, hi = hi
        if !(hi > lo) { lo -= 0.5; hi += 0.5 }
        let raw = (hi - lo) / Double(count)
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2.0, 2.5, 5.0, 10.0].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        let first = floor(lo / step + 1e-9), last = ceil(hi / step - 1e-9)
        return stride(from: first, through: last, by: 1).map { k in
            let t = k * step
            return abs(t) < step * 1e-9 ? 0 : t
        }
    }

    static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1000 || abs(v) < 0.001 { return String(format: "%.1e", v) }
        return String(format: "%g", (v * 1e6).rounded() / 1e6)
    }

    static func frame(title: String, xLabel: String, yLabel: String, x: [Double], y: [Double],
                      width: Double, height: Double, box: (l: Double, t: Double, r: Double, b: Double),
                      xIsInteger: Bool = true) -> (String, (Double) -> Double, (Double) -> Double) {
        let xl = x.first ?? 0, xh = x.last ?? 1, yl = y.first ?? 0, yh = y.last ?? 1
        let px = { (v: Double) in box.l + (xh > xl ? (v - xl) / (xh - xl) : 0.5) * (width - box.l - box.r) }
        let py = { (v: Double) in height - box.b - (yh > yl ? (v - yl) / (yh - yl) : 0.5) * (height - box.t - box.b) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(svgNum(width))\" height=\"\(svgNum(height))\" viewBox=\"0 0 \(svgNum(width)) \(svgNum(height))\">"
        s += "<text x=\"\(svgNum(width / 2))\" y=\"16\" font-size=\"13\" font-weight=\"bold\" text-anchor=\"middle\">\(htmlEscape(title))</text>"
        for v in y {
            s += "<line x1=\"\(svgNum(box.l))\" y1=\"\(svgNum(py(v)))\" x2=\"\(svgNum(width - box.r))\" y2=\"\(svgNum(py(v)))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(svgNum(box.l - 5))\" y=\"\(svgNum(py(v) + 3.5))\" font-size=\"10\" text-anchor=\"end\">\(label(v))</text>"
        }
        for v in x {
            s += "<line x1=\"\(svgNum(px(v)))\" y1=\"\(svgNum(height - box.b))\" x2=\"\(svgNum(px(v)))\" y2=\"\(svgNum(height - box.b + 4))\" stroke=\"#888\"/>"
            s += "<text x=\"\(svgNum(px(v)))\" y=\"\(svgNum(height - box.b + 15))\" font-size=\"10\" text-anchor=\"middle\">\(label(v))</text>"
        }
        s += "<rect x=\"\(svgNum(box.l))\" y=\"\(svgNum(box.t))\" width=\"\(svgNum(width - box.l - box.r))\" height=\"\(svgNum(height - box.t - box.b))\" fill=\"none\" stroke=\"#888\"/>"
        s += "<text x=\"\(svgNum(box.l + (width - box.l - box.r) / 2))\" y=\"\(svgNum(height - 6))\" font-size=\"11\" text-anchor=\"middle\">\(htmlEscape(xLabel))</text>"
        s += "<text transform=\"translate(13,\(svgNum(box.t + (height - box.t - box.b) / 2))) rotate(-90)\" font-size=\"11\" text-anchor=\"middle\">\(htmlEscape(yLabel))</text>"
        return (s, px, py)
    }

    /// Line chart with markers and a legend.
    static func line(title: String, xLabel: String, yLabel: String, series: [Series],
                     width: Double = 440, height: Double = 270) -> String {
        let pts = series.flatMap(\.points)
        guard !pts.isEmpty else {
            return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(svgNum(width))\" height=\"60\"><text x=\"10\" y=\"30\" font-size=\"12\">\(htmlEscape(title)): no data</text></svg>"
        }
        let xs = pts.map(\.0), ys = pts.map(\.1)
        var xt = ticks(xs.min()!, xs.max()!, count: min(8, max(1, Int(xs.max()! - xs.min()!))))
        xt = xt.filter { $0 == $0.rounded() }
        let yt = ticks(min(0, ys.min()!), ys.max()!)
        var (s, px, py) = frame(title: title, xLabel: xLabel, yLabel: yLabel, x: xt, y: yt,
                                width: width, height: height, box: (52, 26, 64, 36))
        for se in series {
            let sorted = se.points.sorted { $0.0 < $1.0 }
            if sorted.count > 1 {
                s += "<polyline fill=\"none\" stroke=\"\(se.color)\" stroke-width=\"1.8\" points=\""
                    + sorted.map { "\(svgNum(px($0.0))),\(svgNum(py($0.1)))" }.joined(separator: " ") + "\"/>"
            }
            for p in sorted {
                s += "<circle cx=\"\(svgNum(px(p.0)))\" cy=\"\(svgNum(py(p.1)))\" r=\"2.8\" fill=\"\(se.color)\"/>"
            }
        }
        for (i, se) in series.enumerated() {   // legend on the right
            let y = 34.0 + Double(i) * 16
            s += "<rect x=\"\(svgNum(width - 54))\" y=\"\(svgNum(y - 8))\" width=\"12\" height=\"8\" fill=\"\(se.color)\"/>"
            s += "<text x=\"\(svgNum(width - 38))\" y=\"\(svgNum(y))\" font-size=\"11\">\(htmlEscape(se.name))</text>"
        }
        return s + "</svg>\n"
    }

    /// Grouped bars (group A, group B) per layer with significance stars.
    static func groupBars(_ c: GroupComparison, width: Double = 900, height: Double = 300) -> String {
        guard !c.rows.isEmpty else { return "" }
        let vals = c.rows.flatMap { [$0.meanA, $0.meanB] }.filter(\.isFinite)
        let yt = ticks(min(0, vals.min() ?? 0), (vals.max() ?? 1) * 1.12)
        let box = (l: 56.0, t: 28.0, r: 120.0, b: 36.0)
        let (frameText, _, py) = frame(title: "\(c.measure.rawValue) per layer: \(c.groupA) vs \(c.groupB)",
                                       xLabel: "layer", yLabel: c.measure.rawValue, x: [], y: yt,
                                       width: width, height: height, box: box)
        var s = frameText
        let slot = (width - box.l - box.r) / Double(c.rows.count)
        let barW = max(2, min(18, slot * 0.36))
        let colors = ("#4c72b0", "#dd8452")
        for (i, r) in c.rows.enumerated() {
            let cx = box.l + slot * (Double(i) + 0.5)
            for (k, v) in [r.meanA, r.meanB].enumerated() where v.isFinite {
                let x = k == 0 ? cx - barW : cx
                let y0 = py(0), y1 = py(v)
                s += "<rect x=\"\(svgNum(x))\" y=\"\(svgNum(min(y0, y1)))\" width=\"\(svgNum(barW))\" height=\"\(svgNum(abs(y0 - y1)))\" fill=\"\(k == 0 ? colors.0 : colors.1)\"/>"
            }
            s += "<text x=\"\(svgNum(cx))\" y=\"\(svgNum(height - box.b + 15))\" font-size=\"10\" text-anchor=\"middle\">\(r.layer)</text>"
            let st = AnalysisReport.stars(r.pAdjusted)
            if !st.isEmpty {
                let top = py(max(r.meanA, r.meanB, 0)) - 5
                s += "<text x=\"\(svgNum(cx))\" y=\"\(svgNum(top))\" font-size=\"13\" font-weight=\"bold\" fill=\"#b00\" text-anchor=\"middle\">\(st)</text>"
            }
        }
        for (k, name) in [c.groupA, c.groupB].enumerated() {
            let y = 40.0 + Double(k) * 16
            s += "<rect x=\"\(svgNum(width - 110))\" y=\"\(svgNum(y - 8))\" width=\"12\" height=\"8\" fill=\"\(k == 0 ? colors.0 : colors.1)\"/>"
            s += "<text x=\"\(svgNum(width - 94))\" y=\"\(svgNum(y))\" font-size=\"11\">\(htmlEscape(name))</text>"
        }
        return s + "</svg>\n"
    }
}
