// ApiContract.cs: the C# bindings' contract, run by tests/c_consumers.rs:
//   mcs -out:ApiContract.exe bindings/csharp/*.cs tests/c/ApiContract.cs
//   LD_LIBRARY_PATH=target/debug/deps mono ApiContract.exe tests/fixtures/tiny-base
// Checks struct mirrors against the library, exceptions carrying status and detail, SafeHandle
// release, and the log handler. Prints "ApiContract: N checks passed" or the failures (exit 1).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Qwentts;

static class ApiContract
{
    static int checks, failures;

    static void Check(bool ok, string what)
    {
        checks++;
        if (!ok) { failures++; Console.Error.WriteLine("CHECK failed: " + what); }
    }

    static QwenttsException Throws(Action action)
    {
        try { action(); }
        catch (QwenttsException e) { return e; }
        return null;
    }

    static int Main(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : "tests/fixtures/tiny-base";
        Library.RequireAbi();
        Check(Library.BuildInfo.StartsWith("qwentts " + Library.Version), "build info names the version");

        // Mirrors: the library fills exactly our struct (a mismatch would change StructSize or garble fields).
        ModelParams p = ModelParams.Create();
        Check(p.StructSize == Marshal.SizeOf(typeof(ModelParams)) && p.Device == NativeMethods.QT_DEVICE_CPU, "params defaults");

        // Failures arrive as exceptions with the status and the library's detail.
        QwenttsException e = Throws(() => Model.Load("/nonexistent/qwentts-model"));
        Check(e != null && e.Status == NativeMethods.QT_STATUS_NOT_FOUND, "missing dir -> NOT_FOUND");
        Check(e != null && e.StatusName == "QT_STATUS_NOT_FOUND" && e.Message.Contains("/nonexistent/qwentts-model"), "message: " + (e == null ? "" : e.Message));
        e = Throws(() => Model.Load(dir, 0));
        Check(e != null && e.Status == NativeMethods.QT_STATUS_UNSUPPORTED && e.Message.Contains("CUDA"), "CUDA device -> UNSUPPORTED");
        e = Throws(() => Library.SetLogLevel(42));
        Check(e != null && e.Status == NativeMethods.QT_STATUS_INVALID_ARGUMENT, "bad log level -> INVALID_ARGUMENT");

        var messages = new List<string>();
        Library.SetLogHandler((level, message) => { lock (messages) messages.Add(level + " " + message); });

        Model model = Model.Load(dir);
        ModelInfo info = model.GetInfo();
        Check(info.StructSize == Marshal.SizeOf(typeof(ModelInfoNative)), "qt_model_info mirror size " + info.StructSize);
        Check(info.Kind == NativeMethods.QT_MODEL_BASE && info.CanClone && info.Device == NativeMethods.QT_DEVICE_CPU, "kind");
        Check(info.SampleRate == 24000 && info.FrameRate == 12.5f && info.Codebooks == 16, "rates");
        Check(info.Languages.Length > 0 && info.Languages[0] == "auto" && info.Speakers.Length == 0, "names");
        Check(info.TensorCount > 0 && info.WeightBytes > 0 && info.SizeLabel.Length > 0, "weights");

        // The handle frees once: Dispose twice is fine, and the handle is then closed.
        ModelHandle handle = model.Handle;
        model.Dispose();
        model.Dispose();
        Check(handle.IsClosed, "Dispose closes the handle");
        bool disposed = false;
        try { model.GetInfo(); } catch (ObjectDisposedException) { disposed = true; }
        Check(disposed, "a disposed model is refused by the SafeHandle, never passed to C");
        lock (messages) Check(messages.Count == 0, "no warnings from a clean lifecycle: " + string.Join(" | ", messages));

        // A pointer the library does not own: reported through the log handler, nothing freed.
        IntPtr foreign = Marshal.AllocHGlobal(64);
        NativeMethods.qt_free(foreign);
        Marshal.FreeHGlobal(foreign);
        lock (messages) Check(messages.Count == 1 && messages[0].StartsWith(NativeMethods.QT_LOG_WARN + " qt_free:"), "log handler got the warning");
        Library.SetLogHandler(null);

        if (failures > 0) { Console.Error.WriteLine("ApiContract: " + failures + " of " + checks + " checks failed"); return 1; }
        Console.WriteLine("ApiContract: " + checks + " checks passed");
        return 0;
    }
}
