import ReplicaNet
import ReplicaObjectStore
import ReplicaStore
import ReplicaSystem

extension ServeCommand {
    /// The receiver of `--store DIR`: a plain `DirectoryStore`, or with `--encrypt-key-file`
    /// (or a directory marked encrypted) the sealed object store, its transfers staged sealed.
    /// An encrypted store without its key, or a plain one with a key, is refused before
    /// anything is written.
    func openReceiver(_ directory: String) throws -> ReceiverStore {
        let options = TargetOptions(encryptKeyFile: encryptKeyFile)
        guard try encryptKeyFile != nil || StoreDirectoryMarker.read(directory) != nil else {
            return try ReceiverStore(store: try DirectoryStore(root: directory))
        }
        let (store, cipher) = try encryptKeyFile == nil ? SealedStoreDirectory.open(directory, options: options)
                                                         : SealedStoreDirectory.create(directory, options: options)
        return try ReceiverStore(store: store, stateDirectory: SealedStoreDirectory.receiverDirectory(directory), cipher: cipher)
    }
}
